"""Generation: Ladder's generate against bare model.generate, SSE first-token latency, and
fp32 / bf16 / int8 / int4 on the CPU, on SmolLM2-135M-Instruct (real weights).

1. In one process, greedy, 128 new tokens: Ladder's `generate` (tokens streamed into Redis,
   a cancel check each token) against `model.generate` alone, same model and precision.
2. Through the whole service (gunicorn API, one prefork worker, Redis, SQLite): from the POST
   to the first `token` server-sent event, model already loaded.
3. Each CPU precision against fp32: tokens/s, weight bytes, RSS growth, and teacher-forced
   top-1 agreement and logit cosine over 4 prompts × 48 tokens.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, start, stop, wait_for_line, write_section
from scripts import processes
from shared import streams
from shared.config import Settings
from shared.kinds import get
from shared.model_registry import resolve
from shared.schema import upgrade
from worker.context import RunContext
from worker.device import rss_bytes
from worker.kinds.generate import loading
from worker.kinds.generate.decode import generate

MODELS = Path(os.environ.get("LADDER_MODELS_DIR", "var/models"))
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")
SETTINGS = Settings(models_dir=MODELS)
PROMPT = "Write a short story about a robot who learns to climb stairs."
PROMPTS = [
    "The history of the stairs begins",
    "Attention, in a transformer, means",
    "def fibonacci(n):",
    "The best way to learn a language is",
]
NEW_TOKENS = 128


def ladder_vs_bare() -> tuple[float, float]:
    generator = loading.load(resolve("smollm2", MODELS), "cpu", "fp32", trust=False)
    params = get("generate").parse(  # type: ignore[union-attr]
        {"messages": [{"role": "user", "content": PROMPT}], "max_new_tokens": NEW_TOKENS}, SETTINGS
    )
    context = RunContext("bench", SETTINGS, streams.connect(BROKER_URL))
    text = generator.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )
    encoded = generator.tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def bare() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            out = generator.model.generate(**encoded, max_new_tokens=NEW_TOKENS, do_sample=False)
        return (out.shape[1] - encoded["input_ids"].shape[1]) / (time.perf_counter() - started)

    def ours() -> float:
        result = generate(params, generator, context)
        return float(result["tokens"]["completion"] / result["timings"]["generate_s"])

    ours(), bare()  # warm up
    a, b = [], []
    for _ in range(5):
        a.append(ours())
        b.append(bare())
    return statistics.median(a), statistics.median(b)


def first_token_through_sse(tmp: Path) -> tuple[float, float]:
    """Median seconds from POST to the first token event, and the worker's own first_token_s."""
    database_url = f"sqlite:///{tmp}/bench.db"
    upgrade(database_url)
    env = {**os.environ, "DATABASE_URL": database_url, "BROKER_URL": BROKER_URL,
           "LADDER_ADMIN_TOKEN": "bench", "LADDER_MODELS_DIR": str(MODELS.resolve())}  # fmt: skip
    port = 8767
    celery = processes.worker("cpu", concurrency=1, extra=processes.QUICK_START)
    api = start(processes.api(bind=f"127.0.0.1:{port}"), env, tmp / "api.log")
    worker = start(celery, env, tmp / "worker.log")
    try:
        wait_for_line(tmp / "api.log", "Booting worker")
        wait_for_line(tmp / "worker.log", " ready.")
        latencies, inside = [], []
        for i in range(6):
            chat = [{"role": "user", "content": PROMPT}]
            body = {"kind": "generate", "params": {"messages": chat, "max_new_tokens": 8}}
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
            conn.request("POST", "/api/v1/jobs", json.dumps(body), headers)
            job = json.loads(conn.getresponse().read())
            conn.request("GET", f"/api/v1/jobs/{job['id']}/events", headers=headers)
            response = conn.getresponse()
            first = None
            for line in response:
                if first is None and line.startswith(b"event: token"):
                    first = time.perf_counter() - started
                if line.startswith(b"event: end"):
                    break
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", f"/api/v1/jobs/{job['id']}", headers=headers)
            result = json.loads(conn.getresponse().read())["result"]
            if i and first is not None:  # the first job loads the model
                latencies.append(first)
                inside.append(result["timings"]["first_token_s"])
        return statistics.median(latencies), statistics.median(inside)
    finally:
        stop(api)
        stop(worker)


def precisions() -> list[dict[str, Any]]:
    entry = resolve("smollm2", MODELS)
    rows = []
    reference: list[torch.Tensor] = []
    sequences: list[torch.Tensor] = []
    starts: list[int] = []
    for precision in ("fp32", "bf16", "int8", "int4"):
        rss = rss_bytes()
        generator = loading.load(entry, "cpu", precision, trust=False)
        tokenizer, model = generator.tokenizer, generator.model
        agree = total = 0
        cosines = []
        for i, prompt in enumerate(PROMPTS):
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            with torch.inference_mode():
                if precision == "fp32":
                    sequences.append(model.generate(ids, max_new_tokens=48, do_sample=False))
                    starts.append(ids.shape[1] - 1)
                logits = model(sequences[i]).logits[0, starts[i] : -1].float()
            if precision == "fp32":
                reference.append(logits)
            agree += int((logits.argmax(-1) == reference[i].argmax(-1)).sum())
            total += logits.shape[0]
            cosines.append(
                float(torch.nn.functional.cosine_similarity(logits, reference[i], dim=-1).mean())
            )
        encoded = tokenizer(PROMPT, return_tensors="pt")
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=64, min_new_tokens=64, do_sample=False)
        speed = (out.shape[1] - encoded["input_ids"].shape[1]) / (time.perf_counter() - started)
        rows.append({
            "precision": precision, "method": generator.plan.method, "tokens_per_s": speed,
            "weights": generator.nbytes, "rss": rss_bytes() - rss,
            "agreement": agree / total, "cosine": statistics.mean(cosines),
        })  # fmt: skip
        del generator, model
    return rows


def main() -> None:
    ours, bare = ladder_vs_bare()
    with tempfile.TemporaryDirectory() as tmp:
        sse_first, worker_first = first_token_through_sse(Path(tmp))
    table = "\n".join(
        f"| {r['precision']} | {r['method']} | {r['tokens_per_s']:.1f} "
        f"| {r['weights'] / 1e6:.0f} MB | {r['rss'] / 1e6:.0f} MB "
        f"| {r['agreement']:.3f} | {r['cosine']:.4f} |"
        for r in precisions()
    )
    write_section(
        "Generation on CPU (SmolLM2-135M-Instruct)",
        f"""
{machine()}, {torch.get_num_threads()} torch threads, {time.strftime("%Y-%m-%d")}.

Greedy, {NEW_TOKENS} new tokens, fp32, medians of 5 interleaved runs in one process:

| | tokens/s |
| --- | ---: |
| Ladder `generate` (streams each token into Redis, checks for cancel) | {ours:.1f} |
| bare `model.generate` | {bare:.1f} |
| Ladder / bare | {ours / bare:.2f}× |

First token through the whole service (POST → first `token` server-sent event, model loaded,
median of 5): {sse_first * 1000:.0f} ms, of which the worker's own prompt-to-first-token was
{worker_first * 1000:.0f} ms; the rest is the queue, the claim and the event stream's poll.

Each CPU precision against fp32 (teacher-forced top-1 agreement and logit cosine over 4 prompts
× 48 tokens; 64 greedy tokens for speed; RSS growth includes what loading left behind):

| precision | method | tokens/s | weights | RSS growth | top-1 agreement | logit cosine |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
{table}
""",
    )


if __name__ == "__main__":
    main()
