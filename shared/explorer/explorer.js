/* The Ladder attention explorer. One attention job's data (the format in shared/explorer's
 * docstring) drawn in the browser: a Model view of every layer × head, a BertViz-style Head view
 * of one head's lines between tokens, a Statistic view of one statistic over every head, the
 * rollout, and, for a matrices job, its one weight matrix. It runs in two places with strict
 * CSPs: the standalone explorer.html (no network at all) and the dashboard's job page (script and
 * style from 'self' only). So it builds every node with createElement and textContent (token
 * texts come from users), sets styles through the CSSOM only (style attributes are refused there),
 * fetches nothing but the one same-origin page in `load`, and draws heatmaps as ImageData.
 * The chosen view, layer and head live in the URL's hash, so a link or a reload opens the same.
 */
(function () {
  "use strict";

  const FORMAT = "ladder-explorer/1";
  const DATA_START = '<script type="application/json" id="explorer-data">';
  const VIEWS = { text: ["model", "head", "statistic", "rollout"], matrices: ["head", "matrix"] };
  const VIEW_NAMES = { model: "Model", head: "Head", statistic: "Statistic", rollout: "Rollout", matrix: "Matrix" };
  const FIRST_STATS = ["entropy", "distance", "confidence", "special_share"];
  const UNITS = { entropy: "nats", distance: "tokens" };
  const BADGES = {
    "special-token sink": "sink", "previous-token": "prev", "next-token": "next", self: "self",
    broad: "broad", punctuation: "punct", positional: "pos", content: "content",
  };
  const SCALING = [
    ["d_k", "d_k"], ["scale", "scale"], ["scale_used", "scale used"],
    ["score_variance_unscaled", "score variance, unscaled"], ["score_variance_scaled", "score variance, scaled"],
    ["score_variance_sqrt_dk", "score variance, ÷√d_k"], ["max_weight_unscaled", "max weight, unscaled"],
    ["max_weight_sqrt_dk", "max weight, ÷√d_k"], ["max_weight_used", "max weight, as used"],
    ["entropy_unscaled", "entropy, unscaled"], ["entropy_sqrt_dk", "entropy, ÷√d_k"],
  ];
  // Lines this faint are invisible anyway; skipping them keeps 128 tokens (16k pairs) quick.
  const MIN_LINE = 0.01;
  const LINE_LEVELS = 32;
  // Pixels per token row in the Head view: the lines' ends are computed from it, and the CSS
  // reads the same number through --row, so tokens and lines cannot drift apart.
  const ROW = 20;
  const LINES_WIDTH = 220;
  const ACCENT = "#31688e"; // the dashboard's accent, so the two read as one product
  const BLUES = ramp([[255, 255, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]]);
  const HEAT = ramp([[255, 237, 160], [254, 178, 76], [240, 59, 32], [128, 0, 38]]);
  const HALF = halfTable();
  const mounted = new WeakMap();

  // ---- decoding the weights ------------------------------------------------------------------

  function halfTable() {
    // Every float16 is exact in a float32, so one lookup per value decodes without rounding.
    const table = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) {
      const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
      if (exponent === 0) table[bits] = sign * fraction * 2 ** -24;
      else if (exponent === 31) table[bits] = fraction ? NaN : sign * Infinity;
      else table[bits] = sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
    }
    return table;
  }

  function base64Bytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function inflate(bytes) {
    // "deflate" is zlib's format (header and checksum), what Python's zlib.compress writes.
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function decodeWeights(spec) {
    const kept = new Map();
    if (!spec || !spec.data || !spec.pairs || !spec.pairs.length) return kept;
    if (spec.dtype !== "float16" || spec.layout !== "byte-planes") {
      throw new Error(`weights in ${spec.dtype}/${spec.layout}, not float16/byte-planes`);
    }
    const bytes = await inflate(base64Bytes(spec.data));
    const count = bytes.length / 2, size = spec.queries * spec.keys;
    if (count !== size * spec.pairs.length) throw new Error(`the weights hold ${count} values, not ${size * spec.pairs.length}`);
    const values = new Float32Array(count);
    for (let i = 0; i < count; i++) values[i] = HALF[bytes[i] | (bytes[count + i] << 8)];
    spec.pairs.forEach(([layer, head], p) => kept.set(`${layer},${head}`, values.subarray(p * size, (p + 1) * size)));
    return kept;
  }

  // ---- small pieces ----------------------------------------------------------------------------

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children || []) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined || value === "" || !Number.isFinite(Number(value))) return "—";
    const number = Number(value);
    return Number.isInteger(number) ? String(number) : String(Number(number.toPrecision(4)));
  }

  function ramp(stops) {
    const lut = new Uint8ClampedArray(256 * 3);
    for (let i = 0; i < 256; i++) {
      const x = (i / 255) * (stops.length - 1), s = Math.min(Math.floor(x), stops.length - 2), t = x - s;
      for (let c = 0; c < 3; c++) lut[i * 3 + c] = stops[s][c] + (stops[s + 1][c] - stops[s][c]) * t;
    }
    return lut;
  }

  function level(t) {
    return Number.isFinite(t) ? Math.max(0, Math.min(255, Math.round(t * 255))) : 0;
  }

  function colour(lut, t) {
    const i = level(t) * 3;
    return `rgb(${lut[i]},${lut[i + 1]},${lut[i + 2]})`;
  }

  function dark(lut, t) {
    const i = level(t) * 3;
    return 0.3 * lut[i] + 0.59 * lut[i + 1] + 0.11 * lut[i + 2] < 140;
  }

  function largest(values) {
    let top = 0;
    for (let i = 0; i < values.length; i++) if (values[i] > top) top = values[i];
    return top;
  }

  function paint(canvas, values, rows, cols, lut, top) {
    canvas.width = cols;
    canvas.height = rows;
    const g = canvas.getContext("2d"), image = g.createImageData(cols, rows), px = image.data;
    const scale = top > 0 ? 255 / top : 0;
    for (let i = 0; i < rows * cols; i++) {
      const c = Math.max(0, Math.min(255, Math.round(values[i] * scale))) * 3 || 0;
      px[i * 4] = lut[c]; px[i * 4 + 1] = lut[c + 1]; px[i * 4 + 2] = lut[c + 2]; px[i * 4 + 3] = 255;
    }
    g.putImageData(image, 0, 0);
  }

  function legend(lut, low, high, caption) {
    const bar = el("canvas", { class: "explorer-legend-bar", width: 120, height: 1 });
    const steps = new Float32Array(120).map((_, i) => i / 119);
    paint(bar, steps, 1, 120, lut, 1);
    return el("div", { class: "explorer-legend" }, [
      el("span", { class: "explorer-legend-caption", text: caption }),
      el("span", { class: "explorer-legend-min", text: fmt(low) }), bar,
      el("span", { class: "explorer-legend-max", text: fmt(high) }),
    ]);
  }

  function range(values) {
    const finite = values.filter(Number.isFinite);
    return finite.length ? [Math.min(...finite), Math.max(...finite)] : [0, 0];
  }

  function share(value, low, high) {
    return high > low ? (value - low) / (high - low) : 0.5;
  }

  // ---- the data, as the views ask for it ------------------------------------------------------

  function weightsOf(app, layer, head) {
    return app.kept.get(`${layer},${head}`) || null;
  }

  function statOf(app, name, layer, head) {
    const rows = (app.data.stats.values || {})[name];
    const value = rows && rows[layer] ? rows[layer][head] : null;
    return value === null || value === undefined ? null : Number(value);
  }

  function labelOf(app, layer, head) {
    const labels = app.data.stats.labels || [];
    return (labels[layer] && labels[layer][head]) || "";
  }

  function badgeOf(label) {
    return BADGES[label] || label.split(/[\s-]/)[0].slice(0, 7);
  }

  function statNames(app) {
    const names = app.data.stats.names || [];
    return FIRST_STATS.filter((n) => names.includes(n)).concat(names.filter((n) => !FIRST_STATS.includes(n)));
  }

  function everyValue(app, name) {
    const all = [];
    for (let l = 0; l < app.layers; l++) for (let h = 0; h < app.heads; h++) all.push(statOf(app, name, l, h));
    return all;
  }

  function keptNote(app) {
    if (app.data.kept && app.data.kept.all !== false) return null;
    const limit = app.data.kept && app.data.kept.limit;
    return `Weights are kept only for some heads (${app.kept.size} of ${app.layers * app.heads}): ` +
      `the text has ${app.queries.length} tokens, over the explorer's limit of ${limit}. ` +
      "The other heads show their statistics only.";
  }

  function passes(app, q, k) {
    const f = app.state.filter;
    if (f === "all" || !app.tokens) return true;
    return app.tokens[q].segment === (f[0] === "B" ? 1 : 0) && app.tokens[k].segment === (f[1] === "B" ? 1 : 0);
  }

  // ---- state and the URL -----------------------------------------------------------------------

  function readHash(app) {
    const params = new URLSearchParams(location.hash.slice(1));
    const number = (key) => (params.has(key) && /^\d+$/.test(params.get(key)) ? Number(params.get(key)) : null);
    const view = params.get("view");
    return { view: app.views.includes(view) ? view : null, layer: number("layer"), head: number("head") };
  }

  function writeHash(app) {
    const params = new URLSearchParams(location.hash.slice(1));
    params.set("view", app.state.view);
    params.set("layer", app.state.layer);
    params.set("head", app.state.head);
    const hash = `#${params}`;
    if (hash === location.hash) return;
    // replaceState keeps the back button for real navigations, and fires no hashchange.
    try { history.replaceState(history.state, "", hash); } catch (error) { location.replace(hash); }
  }

  function fromHash(app) {
    const wanted = readHash(app);
    if (wanted.view) app.state.view = wanted.view;
    if (wanted.layer !== null && wanted.layer < app.layers) app.state.layer = wanted.layer;
    if (wanted.head !== null && wanted.head < app.heads) app.state.head = wanted.head;
  }

  function choose(app, layer, head) {
    app.state.layer = (layer + app.layers) % app.layers;
    app.state.head = (head + app.heads) % app.heads;
    refresh(app);
  }

  function show(app, view) {
    if (app.views.includes(view)) app.state.view = view;
    refresh(app);
  }

  function onKey(app, event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || !app.root.isConnected) return;
    if (event.target.closest && event.target.closest("select, input, textarea, [contenteditable]")) return;
    // On a page of its own the arrows are the explorer's; inside another page (the dashboard's
    // job page) only after a click or focus inside it, so that they still scroll that page.
    if (!document.body.classList.contains("explorer-page") && !app.engaged) return;
    const { layer, head } = app.state, at = layer * app.heads + head, total = app.layers * app.heads;
    const moves = {
      ArrowLeft: () => (at - 1 + total) % total, ArrowRight: () => (at + 1) % total,
      ArrowUp: () => ((layer - 1 + app.layers) % app.layers) * app.heads + head,
      ArrowDown: () => ((layer + 1) % app.layers) * app.heads + head,
    };
    if (!moves[event.key] || total < 2) return;
    event.preventDefault();
    const next = moves[event.key]();
    const hadFocus = event.target.classList && event.target.classList.contains("cell");
    choose(app, Math.floor(next / app.heads), next % app.heads);
    if (hadFocus && app.model) app.model.cells[next].focus();
  }

  // ---- the frame: header, tabs, indicator, views, stats panel ---------------------------------

  function buildFrame(app) {
    const data = app.data, notes = data.notes || [];
    // A div, not <header>: the dashboard styles every header as its dark top bar.
    const header = el("div", { class: "explorer-header" }, [
      el("h2", { class: "explorer-title", text: data.title || "Attention explorer" }),
      notes.length ? el("ul", { class: "explorer-notes" },
        notes.map((n) => el("li", { class: /random weights/i.test(n) ? "warn" : null, text: n }))) : null,
    ]);
    app.tabs = app.views.map((view) => el("button", {
      type: "button", class: "explorer-tab", role: "tab", "data-view": view, text: VIEW_NAMES[view],
    }));
    app.indicator = el("span", { class: "explorer-indicator", "aria-live": "polite" });
    const bar = el("nav", { class: "explorer-bar" }, [
      el("div", { class: "explorer-tabs", role: "tablist" }, app.tabs), app.indicator,
      el("span", { class: "explorer-keyhint", hidden: app.layers * app.heads < 2, text: "← → head · ↑ ↓ layer" }),
    ]);
    app.sections = {};
    for (const view of app.views) app.sections[view] = el("section", { class: `explorer-view explorer-${view}`, "data-view": view, hidden: true });
    app.panel = el("aside", { class: "head-stats", "aria-label": "the chosen head's statistics" });
    app.root.append(header, bar, el("div", { class: "explorer-body" }, [
      el("div", { class: "explorer-views" }, Object.values(app.sections)), app.panel,
    ]));
    bar.addEventListener("click", (event) => {
      const tab = event.target.closest(".explorer-tab");
      if (tab) show(app, tab.dataset.view);
    });
  }

  function refresh(app) {
    const { view, layer, head } = app.state;
    for (const tab of app.tabs) tab.setAttribute("aria-selected", String(tab.dataset.view === view));
    const label = labelOf(app, layer, head);
    app.indicator.textContent = `layer ${layer} · head ${head}${label ? ` · ${label}` : ""}`;
    for (const [name, section] of Object.entries(app.sections)) section.hidden = name !== view;
    const builders = { model: buildModel, head: buildHead, statistic: buildStatistic, rollout: buildRollout, matrix: buildMatrix };
    if (!app.sections[view].firstChild) builders[view](app, app.sections[view]);
    if (view === "model") markChosen(app.model.cells, app);
    if (view === "head") drawHead(app);
    if (view === "statistic") markChosen(app.statistic.cells, app);
    fillPanel(app);
    writeHash(app);
  }

  function markChosen(cells, app) {
    for (const cell of cells) {
      const chosen = Number(cell.dataset.layer) === app.state.layer && Number(cell.dataset.head) === app.state.head;
      cell.classList.toggle("chosen", chosen);
      cell.setAttribute("aria-pressed", String(chosen));
    }
  }

  function headGrid(app, className, makeCell) {
    // Rows are layers, columns heads, each labelled; the cells come from makeCell(layer, head).
    const grid = el("div", { class: `explorer-grid ${className}` }, [el("span", { class: "explorer-corner" })]);
    grid.style.gridTemplateColumns = `auto repeat(${app.heads}, max-content)`;
    for (let h = 0; h < app.heads; h++) grid.append(el("span", { class: "explorer-axis", text: `h${h}` }));
    const cells = [];
    for (let l = 0; l < app.layers; l++) {
      grid.append(el("span", { class: "explorer-axis", text: `L${l}` }));
      for (let h = 0; h < app.heads; h++) {
        const cell = makeCell(l, h);
        cell.dataset.layer = l;
        cell.dataset.head = h;
        cells.push(cell);
        grid.append(cell);
      }
    }
    return { grid, cells };
  }

  // ---- Model view ------------------------------------------------------------------------------

  function buildModel(app, section) {
    const entropy = everyValue(app, "entropy"), [low, high] = range(entropy);
    const { grid, cells } = headGrid(app, "model-grid", (l, h) => modelCell(app, l, h, low, high));
    app.model = { cells };
    grid.addEventListener("click", (event) => {
      const cell = event.target.closest(".cell");
      if (!cell) return;
      app.state.view = "head";
      choose(app, Number(cell.dataset.layer), Number(cell.dataset.head));
    });
    const note = keptNote(app);
    section.append(
      el("p", { class: "explorer-kept", hidden: !note, text: note || "" }),
      el("div", { class: "explorer-scroll" }, [grid]),
      el("div", { class: "explorer-legends" }, [
        legend(HEAT, low, high, "frame: entropy (nats)"),
        legend(BLUES, 0, 1, "cells: weight, each head to its own maximum"),
      ]),
    );
  }

  function modelCell(app, layer, head, low, high) {
    const label = labelOf(app, layer, head), entropy = statOf(app, "entropy", layer, head);
    const weights = weightsOf(app, layer, head);
    const cell = el("button", {
      type: "button", class: "cell",
      title: `layer ${layer} · head ${head}: ${label || "no label"} · entropy ${fmt(entropy)} nats`,
    });
    if (weights) {
      const canvas = el("canvas", { class: app.queries.length < 64 ? "pixelated" : null });
      paint(canvas, weights, app.queries.length, app.keys.length, BLUES, largest(weights));
      cell.append(canvas);
    } else {
      cell.append(el("span", { class: "explorer-noweights", text: "no weights" }));
    }
    cell.append(el("span", { class: "explorer-badge", text: badgeOf(label) }));
    if (entropy !== null) cell.style.borderColor = colour(HEAT, share(entropy, low, high));
    return cell;
  }

  // ---- Head view -------------------------------------------------------------------------------

  function tokenColumn(labels, side, app) {
    const column = el("div", { class: `explorer-tokens explorer-${side}` });
    labels.forEach((label, i) => {
      const token = app.tokens ? app.tokens[i] : null;
      const classes = ["tok", token && token.special ? "special" : "", token && token.punctuation ? "punct" : "",
        token && token.segment === 1 ? "seg-b" : ""].filter(Boolean).join(" ");
      column.append(el("div", { class: classes, "data-index": i, text: label }));
    });
    column.addEventListener("mouseover", (event) => {
      const token = event.target.closest(".tok");
      if (!token) return;
      app.head.focus = { side, index: Number(token.dataset.index) };
      linesSoon(app);
    });
    column.addEventListener("mouseleave", () => {
      app.head.focus = null;
      linesSoon(app);
    });
    return column;
  }

  function buildHead(app, section) {
    const filter = el("select", { class: "explorer-filter", "aria-label": "sentence filter" },
      [["all", "All"], ["AA", "A → A"], ["AB", "A → B"], ["BA", "B → A"], ["BB", "B → B"]]
        .map(([value, text]) => el("option", { value, text })));
    filter.addEventListener("change", () => {
      app.state.filter = filter.value;
      drawHead(app);
    });
    const paired = app.tokens && app.tokens.some((t) => t.segment === 1);
    const canvas = el("canvas", { class: "explorer-lines" });
    const queries = tokenColumn(app.queries, "queries", app), keys = tokenColumn(app.keys, "keys", app);
    const pane = el("div", { class: "explorer-attn" }, [queries, canvas, keys]);
    pane.style.setProperty("--row", `${ROW}px`);
    app.head = { canvas, queries, keys, focus: null, missing: el("p", { class: "explorer-kept", hidden: true }) };
    section.append(
      el("div", { class: "explorer-controls" }, [
        paired ? el("label", { text: "Sentences " }, [filter]) : null,
        el("span", { class: "explorer-hint", text: "Hover a token on the left for where it looks, on the right for who looks at it." }),
      ]),
      app.head.missing,
      el("div", { class: "explorer-columns" }, [
        el("span", { text: app.mode === "matrices" ? "queries" : "from (queries)" }),
        el("span", { text: app.mode === "matrices" ? "keys" : "to (keys)" }),
      ]),
      el("div", { class: "explorer-scroll explorer-attn-scroll" }, [pane]),
    );
  }

  function drawHead(app) {
    const weights = weightsOf(app, app.state.layer, app.state.head);
    app.head.missing.hidden = Boolean(weights);
    app.head.missing.textContent = weights ? "" :
      `No weights for layer ${app.state.layer} · head ${app.state.head}. ${keptNote(app) || ""}`;
    const f = app.state.filter;
    for (const [column, part] of [[app.head.queries, 0], [app.head.keys, 1]]) {
      for (const token of column.children) {
        const segment = app.tokens ? app.tokens[token.dataset.index].segment : 0;
        token.classList.toggle("dim", f !== "all" && segment !== (f[part] === "B" ? 1 : 0));
      }
    }
    drawLines(app);
  }

  function linesSoon(app) {
    // A sweep of the mouse over a column asks for many drawings: one per frame is enough.
    if (app.head.pending) return;
    app.head.pending = requestAnimationFrame(() => {
      app.head.pending = 0;
      drawLines(app);
    });
  }

  function drawLines(app) {
    const { canvas, focus } = app.head, nq = app.queries.length, nk = app.keys.length;
    const weights = weightsOf(app, app.state.layer, app.state.head);
    const ratio = Math.min(2, window.devicePixelRatio || 1), height = Math.max(nq, nk) * ROW;
    if (canvas.width !== LINES_WIDTH * ratio || canvas.height !== height * ratio) {
      canvas.width = LINES_WIDTH * ratio;
      canvas.height = height * ratio;
      canvas.style.width = `${LINES_WIDTH}px`;
      canvas.style.height = `${height}px`;
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, LINES_WIDTH, height);
    shadeTokens(app, weights);
    if (!weights) return;
    g.strokeStyle = ACCENT;
    g.lineWidth = focus ? 2 : 1.2;
    // One path per opacity level, stroked once: 128 tokens can hold 13,000 lines, and a stroke
    // each made hovering lag.
    const levels = Array.from({ length: LINE_LEVELS }, () => new Path2D());
    for (let q = 0; q < nq; q++) {
      if (focus && focus.side === "queries" && focus.index !== q) continue;
      for (let k = 0; k < nk; k++) {
        if (focus && focus.side === "keys" && focus.index !== k) continue;
        const w = weights[q * nk + k];
        if (!(w >= MIN_LINE) || !passes(app, q, k)) continue;
        const path = levels[Math.min(LINE_LEVELS - 1, Math.floor(w * LINE_LEVELS))];
        path.moveTo(0, (q + 0.5) * ROW);
        path.lineTo(LINES_WIDTH, (k + 0.5) * ROW);
      }
    }
    levels.forEach((path, level) => {
      g.globalAlpha = (level + 1) / LINE_LEVELS;
      g.stroke(path);
    });
    g.globalAlpha = 1;
  }

  function shadeTokens(app, weights) {
    // While a token is hovered, the other column shows how much weight each of its tokens has.
    const { focus, queries, keys } = app.head, nk = app.keys.length;
    for (const column of [queries, keys]) {
      for (const token of column.children) {
        const i = Number(token.dataset.index), mine = focus && column === (focus.side === "queries" ? queries : keys);
        token.classList.toggle("hot", Boolean(mine && focus.index === i));
        let w = 0;
        if (focus && weights && !mine) w = focus.side === "queries" ? weights[focus.index * nk + i] : weights[i * nk + focus.index];
        token.style.backgroundColor = w > 0 ? `rgba(49,104,142,${Math.min(1, w).toFixed(3)})` : "";
        token.classList.toggle("light-text", w > 0.5);
        token.title = focus && weights && !mine ? fmt(w) : "";
      }
    }
  }

  // ---- the stats panel -------------------------------------------------------------------------

  function statRow(name, value, unit) {
    return el("tr", { "data-stat": name }, [
      el("th", { text: name }), el("td", { class: "value", text: typeof value === "string" ? value : fmt(value) }), el("td", { class: "unit", text: unit || "" }),
    ]);
  }

  function fillPanel(app) {
    const { layer, head } = app.state, label = labelOf(app, layer, head), focus = app.data.focus || {};
    const parts = [
      el("h3", { text: `layer ${layer} · head ${head}` }),
      label ? el("p", { class: "explorer-label", text: label }) : null,
      app.mode === "text" && focus.layer === layer && focus.head === head && focus.why ? el("p", { class: "explorer-why", text: `The job's chosen head: ${focus.why}.` }) : null,
      weightsOf(app, layer, head) ? null : el("p", { class: "explorer-kept", text: "Statistics only: this head's weights were not kept." }),
      el("table", { class: "explorer-stats" }, [el("tbody", {},
        (app.data.stats.names || []).map((name) => statRow(name, statOf(app, name, layer, head), UNITS[name])))]),
    ];
    const top = ((app.data.stats.top || [])[layer] || [])[head] || [];
    if (top.length) {
      parts.push(el("h4", { text: "Most attended" }), el("ol", { class: "explorer-top" }, top.map((item) => el("li", {}, [
        el("span", { class: "tok", text: String(item.token) }), el("span", { class: "value", text: fmt(item.weight) }),
      ]))));
    }
    if (app.mode === "matrices") parts.push(...matricesPanel(app));
    app.panel.replaceChildren(...parts.filter(Boolean));
  }

  function matricesPanel(app) {
    const rows = app.data.stats.rows || [];
    const scaling = (app.data.matrices || {}).scaling || {}, known = SCALING.map(([key]) => key);
    const scalingRows = SCALING.filter(([key]) => key in scaling).map(([key, name]) => statRow(name, scaling[key]))
      .concat(Object.keys(scaling).filter((key) => !known.includes(key)).map((key) => statRow(key, scaling[key])));
    const diff = (app.data.matrices || {}).sdpa_max_abs_diff;
    return [
      el("h4", { text: "Entropy per query (nats)" }),
      el("table", { class: "explorer-stats explorer-rows" }, [el("tbody", {}, rows.flat(2).map((v, i) => statRow(`q${i}`, v)))]),
      el("h4", { text: "Scaling" }),
      el("table", { class: "explorer-stats explorer-scaling" }, [el("tbody", {}, scalingRows.concat(
        diff === undefined ? [] : [statRow("max |Δ| vs SDPA", diff)]))]),
    ];
  }

  // ---- Statistic view --------------------------------------------------------------------------

  function buildStatistic(app, section) {
    const pick = el("select", { class: "explorer-stat-pick", "aria-label": "statistic" },
      statNames(app).map((name) => el("option", { value: name, text: name })));
    pick.value = app.state.stat;
    const { grid, cells } = headGrid(app, "stat-grid", () => el("button", { type: "button", class: "stat-cell" }));
    app.statistic = { cells, legend: el("div", { class: "explorer-legends" }) };
    pick.addEventListener("change", () => {
      app.state.stat = pick.value;
      paintStatistic(app);
    });
    grid.addEventListener("click", (event) => {
      const cell = event.target.closest(".stat-cell");
      if (cell) choose(app, Number(cell.dataset.layer), Number(cell.dataset.head));
    });
    section.append(el("div", { class: "explorer-controls" }, [el("label", { text: "Statistic " }, [pick])]),
      el("div", { class: "explorer-scroll" }, [grid]), app.statistic.legend);
    paintStatistic(app);
  }

  function paintStatistic(app) {
    const name = app.state.stat, [low, high] = range(everyValue(app, name));
    for (const cell of app.statistic.cells) {
      const layer = Number(cell.dataset.layer), head = Number(cell.dataset.head), value = statOf(app, name, layer, head);
      const t = value === null ? null : share(value, low, high);
      cell.textContent = fmt(value);
      cell.title = `layer ${layer} · head ${head}: ${name} ${fmt(value)}${UNITS[name] ? ` ${UNITS[name]}` : ""} · ${labelOf(app, layer, head)}`;
      cell.style.backgroundColor = t === null ? "" : colour(BLUES, t);
      cell.classList.toggle("light-text", t !== null && dark(BLUES, t));
    }
    app.statistic.legend.replaceChildren(legend(BLUES, low, high, name + (UNITS[name] ? ` (${UNITS[name]})` : "")));
  }

  // ---- Rollout and Matrix views: one heatmap with labelled axes --------------------------------

  function heatmap(values, rowLabels, colLabels, caption) {
    const rows = rowLabels.length, cols = colLabels.length, top = largest(values);
    const size = Math.max(10, Math.min(40, Math.floor(560 / Math.max(rows, cols))));
    const canvas = el("canvas", { class: "explorer-heat-canvas pixelated" });
    paint(canvas, values, rows, cols, BLUES, top);
    canvas.style.width = `${cols * size}px`;
    canvas.style.height = `${rows * size}px`;
    const readout = el("p", { class: "explorer-readout", "aria-live": "polite", text: "Hover a cell for its value." });
    const colAxis = el("div", { class: "explorer-col-labels" }, colLabels.map((t) => el("span", { text: t })));
    const rowAxis = el("div", { class: "explorer-row-labels" }, rowLabels.map((t) => el("span", { text: t })));
    const figure = el("div", { class: "explorer-heat" }, [el("span"), colAxis, rowAxis, canvas]);
    figure.style.setProperty("--cell", `${size}px`);
    let lit = [];
    canvas.addEventListener("mousemove", (event) => {
      const box = canvas.getBoundingClientRect();
      const k = Math.min(cols - 1, Math.floor(((event.clientX - box.left) / box.width) * cols));
      const q = Math.min(rows - 1, Math.floor(((event.clientY - box.top) / box.height) * rows));
      const text = `${rowLabels[q]} → ${colLabels[k]}: ${fmt(values[q * cols + k])}`;
      readout.textContent = text;
      canvas.title = text;
      for (const node of lit) node.classList.remove("hot");
      lit = [rowAxis.children[q], colAxis.children[k]];
      for (const node of lit) node.classList.add("hot");
    });
    return el("div", { class: "explorer-figure" }, [readout, el("div", { class: "explorer-scroll explorer-heat-scroll" }, [figure]),
      legend(BLUES, 0, top, caption)]);
  }

  function buildRollout(app, section) {
    const rollout = app.data.rollout || [], n = rollout.length;
    const residual = app.data.rollout_residual;
    const mixed = residual === undefined || residual === null ? "with the residual stream" : `with the residual stream, residual ${fmt(residual)}`;
    section.append(el("p", { class: "explorer-hint", text: `Attention rollout (Abnar & Zuidema, 2020), ${mixed}: ` +
      "how much each token (row) draws on each input token (column) through all the layers." }));
    if (!n) {
      section.append(el("p", { class: "explorer-kept", text: "This job has no rollout." }));
      return;
    }
    const texts = app.queries.slice(0, n);
    section.append(heatmap(Float64Array.from(rollout.flat()), texts, texts, "rollout"));
  }

  function buildMatrix(app, section) {
    const weights = weightsOf(app, 0, 0);
    section.append(weights ? heatmap(weights, app.queries, app.keys, "weight") : el("p", { class: "explorer-kept", text: "No weights in this page." }));
  }

  // ---- mounting --------------------------------------------------------------------------------

  function message(root, text, kind) {
    root.classList.add("explorer");
    root.replaceChildren(el("p", { class: `explorer-message ${kind || ""}`, text }));
  }

  async function mount(root, data) {
    if (mounted.has(root)) mounted.get(root).abort.abort();
    delete root.dataset.ready;
    message(root, "loading…");
    if (!data || data.format !== FORMAT) {
      message(root, `Not explorer data (format ${data && data.format}).`, "error");
      throw new Error("not explorer data");
    }
    let kept;
    try {
      kept = await decodeWeights(data.weights);
    } catch (error) {
      message(root, `Could not decode the weights: ${error.message}`, "error");
      throw error;
    }
    const app = createApp(root, data, kept);
    mounted.set(root, app);
    root.dataset.ready = "true";
    return app.api;
  }

  function createApp(root, data, kept) {
    const mode = data.mode === "matrices" ? "matrices" : "text";
    const shape = data.shape || {};
    const tokens = mode === "text" ? data.tokens || [] : null;
    const queries = tokens ? tokens.map((t) => String(t.text)) : Array.from({ length: shape.n || 0 }, (_, i) => `q${i}`);
    const keys = tokens ? queries : Array.from({ length: shape.m || 0 }, (_, i) => `k${i}`);
    const focus = data.focus || {};
    const app = {
      root, data, mode, kept, tokens, queries, keys, views: VIEWS[mode], abort: new AbortController(),
      layers: Math.max(1, data.layers || 1), heads: Math.max(1, data.heads || 1),
    };
    app.state = {
      view: app.views[0], layer: Math.min(focus.layer || 0, app.layers - 1), head: Math.min(focus.head || 0, app.heads - 1),
      stat: statNames(app).includes("entropy") ? "entropy" : statNames(app)[0] || "", filter: "all",
    };
    fromHash(app);
    root.replaceChildren();
    root.classList.add("explorer");
    buildFrame(app);
    const signal = app.abort.signal;
    document.addEventListener("keydown", (event) => onKey(app, event), { signal });
    const engage = (event) => { app.engaged = app.root.contains(event.target); };
    document.addEventListener("pointerdown", engage, { signal });
    document.addEventListener("focusin", engage, { signal });
    window.addEventListener("hashchange", () => { fromHash(app); refresh(app); }, { signal });
    refresh(app);
    app.api = {
      state: () => ({ ...app.state, label: labelOf(app, app.state.layer, app.state.head) }),
      select: (layer, head) => { choose(app, layer, head); return app.api.state(); },
      show: (view) => { show(app, view); return app.api.state(); },
      weights: (layer, head) => weightsOf(app, layer, head),
      destroy: () => app.abort.abort(),
    };
    return app;
  }

  function embeddedData(html) {
    // The data element's text, cut out as shared/explorer's embedded() does. Not DOMParser: the
    // document it makes inherits this page's CSP, which then reports the artifact's inline
    // <style> as a violation on every load. render() escapes every "<" in the data, so the
    // first closing tag after the start is the element's own, and a script's text is raw.
    const start = html.indexOf(DATA_START);
    if (start < 0) throw new Error("the page holds no explorer data");
    const end = html.indexOf("</", start + DATA_START.length);
    if (end < 0) throw new Error("the page's explorer data has no end");
    return html.slice(start + DATA_START.length, end);
  }

  async function load(root, url) {
    message(root, "loading…");
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return await mount(root, JSON.parse(embeddedData(await response.text())));
    } catch (error) {
      if (!root.querySelector(".explorer-message.error")) message(root, `Could not load the explorer: ${error.message}`, "error");
      return null;
    }
  }

  function start() {
    const source = document.getElementById("explorer-data");
    for (const root of document.querySelectorAll("[data-explorer]:not([data-src])")) {
      if (!source) continue;
      let data;
      try {
        data = JSON.parse(source.textContent);
      } catch (error) {
        message(root, `The page's explorer data is not JSON: ${error.message}`, "error");
        continue;
      }
      mount(root, data).catch(() => {}); // mount has shown its message in root
    }
  }

  window.LadderExplorer = { mount, load, of: (root) => (mounted.has(root) ? mounted.get(root).api : null) };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
