// The dashboard's live parts: each page polls its JSON every two seconds and redraws.
// Text goes in with textContent only, so nothing a job contains can become markup.
"use strict";

const POLL_MS = 2000;
const $ = (selector) => document.querySelector(selector);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? "";
    tr.appendChild(td);
  }
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function jobLink(id) {
  const a = el("a", id.slice(0, 8));
  a.href = `/admin/jobs/${encodeURIComponent(id)}`;
  return a;
}

function bytes(n) {
  return n === undefined ? "" : `${(n / 1e9).toFixed(2)} GB`;
}

function bar(used, total) {
  const outer = el("div", null, "bar");
  const inner = el("span");
  inner.style.width = `${Math.min(100, (100 * used) / (total || 1)).toFixed(0)}%`;
  outer.appendChild(inner);
  return outer;
}

function jobProgress() {
  let shown = 0;
  let stage = "";
  const draw = () => {
    const percent = Math.round(1000 * shown) / 10;
    $("#progress > span").style.width = `${percent}%`;
    $("#progress").setAttribute("aria-valuenow", String(Math.round(percent)));
    $("#progress-text").textContent = `${percent}%${stage ? ` · ${stage}` : ""}`;
  };
  return {
    show(value, named) {
      if (typeof value !== "number" || !(value >= 0)) return;
      if (named) stage = named;
      shown = Math.max(shown, Math.min(1, value));
      if (shown === 1) stage = "";
      draw();
    },
    reset() { shown = 0; stage = ""; draw(); },
  };
}

function showWebhook(webhook) {
  $("#webhook-box").hidden = !webhook;
  if (!webhook) return;
  $("#webhook-url").textContent = webhook.url;
  const state = $("#webhook-state");
  state.textContent = webhook.state;
  state.className = `state webhook-${webhook.state}`;
  $("#webhook-next").textContent = webhook.next_attempt_at ? `next attempt ${webhook.next_attempt_at}` : "";
  fill($("#webhook-attempts tbody"), webhook.attempts.map((a) => row([a.at, a.status, a.error, a.duration_ms])));
}

async function poll(url, draw) {
  async function tick() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) { window.location = "/admin/login"; return; }
      if (response.ok) {
        draw(await response.json());
        $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      }
    } catch (error) {
      $("#updated").textContent = `not updated: ${error}`;
    }
    setTimeout(tick, POLL_MS);
  }
  tick();
}

function workerCard(w) {
  const card = el("div", null, "card");
  card.dataset.worker = w.name;
  card.appendChild(el("div", `${w.name} · ${w.pool}`, "title"));
  card.appendChild(el("div", w.state, `state ${w.state}`));
  const d = w.device || {};
  card.appendChild(el("div", `${d.cpu || ""} · ${d.cores || "?"} cores`, "muted"));
  card.appendChild(el("div", `RAM ${bytes(d.ram_used_bytes)} of ${bytes(d.ram_bytes)}`));
  card.appendChild(bar(d.ram_used_bytes, d.ram_bytes));
  if (d.gpu) {
    card.appendChild(el("div", `${d.gpu}: ${bytes(d.gpu_used_bytes)} of ${bytes(d.gpu_bytes)}`));
    card.appendChild(bar(d.gpu_used_bytes, d.gpu_bytes));
  }
  const models = (w.models || []).map((m) => `${m.model} (${(m.plan || {}).dtype || ""})`).join(", ");
  card.appendChild(el("div", `models: ${models || "none"}`, "muted"));
  card.appendChild(el("div", `running: ${(w.running || []).length} · done ${(w.counts || {}).succeeded || 0} · failed ${(w.counts || {}).failed || 0}`));
  return card;
}

function drawChart(series) {
  const svg = $("#chart");
  const peak = Math.max(1, ...series.map((p) => p.finished));
  const width = 600 / series.length;
  const bars = series.map((p, i) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const height = (110 * p.finished) / peak;
    rect.setAttribute("x", String(i * width));
    rect.setAttribute("y", String(120 - height));
    rect.setAttribute("width", String(Math.max(1, width - 1)));
    rect.setAttribute("height", String(height));
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `${p.minute}: ${p.finished}`;
    rect.appendChild(title);
    return rect;
  });
  svg.replaceChildren(...bars);
}

const pages = {
  overview() {
    poll("/admin/api/overview", (data) => {
      const cards = data.workers.map(workerCard);
      $("#workers").replaceChildren(...(cards.length ? cards : [el("p", "No worker has reported yet.", "muted")]));
      fill($("#queues tbody"), Object.entries(data.stats.queues).map(([q, n]) => row([q, n])));
      fill($("#statuses tbody"), Object.entries(data.stats.jobs.by_status).map(([s, n]) => row([el("span", s, s), n])));
      fill($("#windows tbody"), Object.entries(data.stats.windows).map(([label, w]) => row([
        label, `${w.finished} finished`, `p50 ${w.duration_p50_s ?? "–"} s`, `p95 ${w.duration_p95_s ?? "–"} s`,
      ])));
      drawChart(data.throughput);
      fill($("#failures tbody"), data.failures.map((j) => row([
        jobLink(j.id), j.kind, (j.error || {}).code, (j.error || {}).message, j.finished_at,
      ])));
    });
  },

  jobs() {
    const params = new URLSearchParams();
    if (document.body.dataset.kind) params.set("kind", document.body.dataset.kind);
    if (document.body.dataset.status) params.set("status", document.body.dataset.status);
    poll(`/admin/api/jobs?${params}`, (data) => {
      fill($("#jobs tbody"), data.items.map((j) => {
        const tr = row([jobLink(j.id), j.kind, el("span", j.status, `status ${j.status}`), j.summary,
          j.queue, j.worker, j.attempts, j.created_at]);
        tr.dataset.job = j.id;
        return tr;
      }));
    });
  },

  job() {
    const id = document.body.dataset.job;
    const progress = jobProgress();
    // Every kind's stream carries its progress events; a generation's carries its tokens too.
    const source = new EventSource(`/admin/jobs/${encodeURIComponent(id)}/events`);
    source.addEventListener("progress", (event) => {
      const data = JSON.parse(event.data);
      progress.show(data.progress, data.stage);
    });
    source.addEventListener("status", (event) => progress.show(JSON.parse(event.data).progress));
    source.addEventListener("end", () => source.close());
    if (document.body.dataset.kind === "generate") {
      $("#stream-box").hidden = false;
      source.addEventListener("token", (event) => {
        $("#stream").textContent += JSON.parse(event.data).text;
      });
    }
    poll(`/admin/api/jobs/${encodeURIComponent(id)}`, (job) => {
      const status = $("#status");
      status.textContent = job.status;
      status.className = `status ${job.status}`;
      // A queued job starts (again) from nothing; otherwise the bar only rises, as the row
      // (written once a second) lags the events (a few a second).
      if (job.status === "queued") progress.reset();
      progress.show(job.progress);
      fill($("#timeline tbody"), [
        row(["created", job.created_at]), row(["started", job.started_at]),
        row(["finished", job.finished_at]), row(["attempts", job.attempts]),
        row(["worker", job.worker]), row(["queue", job.queue]),
      ]);
      $("#params").textContent = JSON.stringify(job.params, null, 2);
      $("#result").textContent = job.result ? JSON.stringify(job.result, null, 2) : "";
      $("#error").textContent = job.error ? JSON.stringify(job.error, null, 2) : "";
      showWebhook(job.webhook);
      $("#cancel").disabled = !["queued", "running"].includes(job.status);
      $("#retry").disabled = job.status !== "failed";
      if (job.artifacts.includes("explorer.html") && window.LadderExplorer && $("#explorer-box").hidden) {
        const url = `/admin/jobs/${encodeURIComponent(id)}/artifacts/explorer.html`;
        $("#explorer-open").href = url;
        $("#explorer-download").href = url;
        $("#explorer-box").hidden = false;
        window.LadderExplorer.load($("#explorer"), url);
      }
      if (job.artifacts.includes("heatmap.png") && $("#heatmap-box").hidden) {
        $("#heatmap").src = `/admin/jobs/${encodeURIComponent(id)}/artifacts/heatmap.png`;
        $("#heatmap-box").hidden = false;
      }
    });
  },

  workers() {
    poll("/admin/api/workers", (data) => {
      fill($("#worker-table tbody"), data.items.map((w) => {
        const d = w.device || {};
        const tr = row([w.name, el("span", w.state, `state ${w.state}`), w.pool,
          `${d.gpu || d.cpu || ""} (${d.cores || "?"} cores)`,
          `${bytes(d.gpu_used_bytes ?? d.ram_used_bytes)} of ${bytes(d.gpu_bytes ?? d.ram_bytes)}`,
          (w.models || []).map((m) => m.model).join(", "), (w.running || []).length,
          `${(w.counts || {}).succeeded || 0} / ${(w.counts || {}).failed || 0}`,
          new Date(w.started_at * 1000).toLocaleString()]);
        tr.dataset.worker = w.name;
        return tr;
      }));
    });
  },
};

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  const page = pages[document.body.dataset.page];
  if (page) page();
});
