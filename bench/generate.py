"""Generation: Ladder's generate against bare model.generate, SSE first-token latency, and
fp32 / bf16 / int8 / int4 on the CPU, on SmolLM2-135M-Instruct (real weights).

1. In one process, greedy, 128 new tokens: Ladder's `generate` (tokens streamed into Redis,
   a cancel check each token) against `model.generate` alone, same model and precision.
2. Batching: bare `model.generate` one by one and as one static batch, against the whole
   service (gunicorn API, a `cpu.generate` worker, Redis, SQLite) running 8 chats one after
   another and 8 at once; the first token on an idle worker and inside a running batch.
3. Each CPU precision against fp32: tokens/s, weight bytes, RSS growth, and teacher-forced
   top-1 agreement and logit cosine over 4 prompts × 48 tokens.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, stop, write_section
from bench.service import BROKER_URL, PORT, TOKEN, Ladder
from shared import streams
from shared.config import Settings
from shared.kinds import get
from shared.model_registry import resolve
from worker.context import RunContext
from worker.device import rss_bytes
from worker.kinds.generate import loading
from worker.kinds.generate.decode import generate

MODELS = Path(os.environ.get("LADDER_MODELS_DIR", "var/models"))
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


CHATS = [
    "Write a short story about a robot who learns to climb stairs.",
    "Explain how a transformer decides what to attend to.",
    "Describe the city of Paris to someone who has never been there.",
    "Give me ten tips for learning a new language.",
    "Write a poem about the sea at night.",
    "Explain quantization of neural networks to a beginner.",
    "Tell me about the history of the bicycle.",
    "Describe how a compiler turns code into a program.",
]
BATCH_TOKENS = 64


class Service:
    """The API under gunicorn and one generate worker (threads, a batch of 8), on SQLite."""

    def __init__(self, tmp: Path) -> None:
        self.headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        self.ladder = Ladder(tmp, env={"LADDER_MODELS_DIR": str(MODELS.resolve())})
        self.worker = self.ladder.worker(queue="cpu.generate")
        self.port = PORT

    def call(self, method: str, path: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.request(method, path, json.dumps(body) if body else None, self.headers)
        answer = json.loads(conn.getresponse().read())
        conn.close()
        return answer

    def submit(self, chat: str, tokens: int, **params: Any) -> str:
        """A chat job; `params` adds to its params (a model, a quantization)."""
        params = {"messages": [{"role": "user", "content": chat}], "max_new_tokens": tokens,
                  **params}  # fmt: skip
        job_id: str = self.call("POST", "/api/v1/jobs", {"kind": "generate", "params": params})[
            "id"
        ]
        return job_id

    def first_token(self, job_id: str, since: float) -> float:
        """Seconds from `since` to the job's first `token` event; follows it to its end."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.request("GET", f"/api/v1/jobs/{job_id}/events", headers=self.headers)
        first = None
        for line in conn.getresponse():
            if first is None and line.startswith(b"event: token"):
                first = time.perf_counter() - since
            if line.startswith(b"event: end"):
                break
        conn.close()
        assert first is not None, f"job {job_id} sent no token"
        return first

    def wait(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.call("GET", f"/api/v1/jobs/{job_id}?wait=60")
        while job["status"] in ("queued", "running"):
            job = self.call("GET", f"/api/v1/jobs/{job_id}?wait=60")
        return job

    def close(self) -> None:
        stop(self.worker)
        self.ladder.close()


def through_the_service(tmp: Path) -> dict[str, float]:
    """8 chats one after another, then all 8 at once; first token idle and inside a batch."""
    service = Service(tmp)
    try:
        service.wait(service.submit(CHATS[0], 4))  # loads the model
        started = time.perf_counter()
        alone = [service.wait(service.submit(chat, BATCH_TOKENS)) for chat in CHATS]
        alone_s = time.perf_counter() - started
        started = time.perf_counter()
        ids = [service.submit(chat, BATCH_TOKENS) for chat in CHATS]
        together = [service.wait(job_id) for job_id in ids]
        together_s = time.perf_counter() - started
        idle = []
        for chat in CHATS[:5]:
            started = time.perf_counter()
            idle.append(service.first_token(service.submit(chat, 8), started))
        busy = []
        for chat in CHATS[:5]:
            running = [service.submit(c, 4 * BATCH_TOKENS) for c in CHATS[1:]]
            time.sleep(2)  # the scenario itself: the batch of 7 is decoding when this one comes
            started = time.perf_counter()
            busy.append(service.first_token(service.submit(chat, 8), started))
            for job_id in running:
                service.wait(job_id)
        tokens = [sum(j["result"]["tokens"]["completion"] for j in js) for js in (alone, together)]
        return {
            "alone_tokens_s": tokens[0] / alone_s,
            "together_tokens_s": tokens[1] / together_s,
            "tokens_alone": tokens[0],
            "tokens_together": tokens[1],
            "batch_max": max(j["result"]["timings"]["batch_size_max"] for j in together),
            "first_idle_s": statistics.median(idle),
            "first_busy_s": statistics.median(busy),
        }
    finally:
        service.close()


def bare_batching() -> tuple[float, float]:
    """Bare transformers on the same 8 chats: model.generate one by one, then one left-padded
    static batch of 8 (tokens/s each, counting tokens up to each text's end)."""
    generator = loading.load(resolve("smollm2", MODELS), "cpu", "fp32", trust=False)
    tokenizer, model = generator.tokenizer, generator.model
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True,
                                      tokenize=False)
        for c in CHATS
    ]  # fmt: skip
    options = {"max_new_tokens": BATCH_TOKENS, "do_sample": False}
    eos = model.generation_config.eos_token_id

    def count(rows: torch.Tensor) -> int:
        return sum(int((row != eos).cumprod(0).sum()) + int((row == eos).any()) for row in rows)

    started, tokens = time.perf_counter(), 0
    for text in texts:
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**encoded, **options)
        tokens += count(out[:, encoded["input_ids"].shape[1] :])
    one_by_one = tokens / (time.perf_counter() - started)
    tokenizer.padding_side = "left"
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**encoded, **options, pad_token_id=tokenizer.pad_token_id or eos)
    batched = count(out[:, encoded["input_ids"].shape[1] :]) / (time.perf_counter() - started)
    return one_by_one, batched


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


def load_peak(precision: str) -> None:
    """In a fresh process: load SmolLM2 at `precision`, generate 8 tokens (fp32's weights are
    memory-mapped and count only once touched), print the peak above the RSS before the load.
    The libraries a load may use are imported first: importing is the process's cost, paid
    once, not the load's (torchao's int4 module alone maps about 110 MB)."""
    import torchao.quantization  # noqa: F401
    from torchao.prototype.quantization.int4 import inference_workflow  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig  # noqa: F401

    before = rss_bytes()
    generator = loading.load(resolve("smollm2", MODELS), "cpu", precision, trust=False)
    encoded = generator.tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        generator.model.generate(**encoded, max_new_tokens=8, do_sample=False)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    peak = int(status["VmHWM"].split()[0]) * 1024 - before
    print(json.dumps({"peak": peak, "weights": generator.nbytes, "method": generator.plan.method}))


def load_peaks() -> dict[str, dict[str, Any]]:
    peaks = {}
    for precision in ("fp32", "bf16", "int8", "int4"):
        out = subprocess.run([sys.executable, __file__, "--load-peak", precision], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        peaks[precision] = json.loads(out.strip().splitlines()[-1])
    return peaks


def main() -> None:
    if sys.argv[1:2] == ["--load-peak"]:
        load_peak(sys.argv[2])
        return
    peaks = load_peaks()
    ours, bare = ladder_vs_bare()
    bare_one, bare_batch = bare_batching()
    with tempfile.TemporaryDirectory() as tmp:
        service = through_the_service(Path(tmp))
    table = "\n".join(
        f"| {r['precision']} | {r['method']} | {r['tokens_per_s']:.1f} "
        f"| {r['weights'] / 1e6:.0f} MB | {r['rss'] / 1e6:.0f} MB "
        f"| {r['agreement']:.3f} | {r['cosine']:.4f} |"
        for r in precisions()
    )
    alone = service["alone_tokens_s"]
    fp32_peak = peaks["fp32"]["peak"]
    peak_table = "\n".join(
        f"| {precision} | {p['method']} | {p['weights'] / 1e6:.0f} MB | {p['peak'] / 1e6:.0f} MB "
        f"| {p['peak'] / fp32_peak:.2f}× |"
        for precision, p in peaks.items()
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

Batching: the same {len(CHATS)} chats, up to {BATCH_TOKENS} new tokens each (a text may end
sooner), greedy, fp32. Bare transformers in this process; Ladder through the whole service
(gunicorn API, a `cpu.generate` worker with a batch of 8, Redis, SQLite), tokens/s counted
from the first POST to the last job's end:

| | tokens/s | against one at a time |
| --- | ---: | ---: |
| bare `model.generate`, one chat at a time | {bare_one:.1f} | 1.00× |
| bare `model.generate`, one left-padded batch of 8 | {bare_batch:.1f} | {
            bare_batch / bare_one:.2f}× |
| Ladder, one job at a time ({service["tokens_alone"]:.0f} tokens) | {alone:.1f} | 1.00× |
| Ladder, 8 jobs submitted at once ({service["tokens_together"]:.0f} tokens, batch of up to {
            service["batch_max"]:.0f}) | {service["together_tokens_s"]:.1f} | {
            service["together_tokens_s"] / alone:.2f}× |

First token through the whole service (POST → first `token` server-sent event, model loaded,
median of 5): {service["first_idle_s"] * 1000:.0f} ms on an idle worker; {
            service["first_busy_s"] * 1000:.0f} ms for a job that arrives while 7 others decode ({
            service["first_busy_s"]
            / service["first_idle_s"]:.2f}×): it joins their batch at the next step.

Peak memory of loading, each precision in a fresh process: the peak RSS (VmHWM) after the load
(config, weights, tokenizer) and an 8-token generation, above the RSS before the load, with
torch, transformers and torchao already imported. Quantized loads quantize each weight as it
is read, from a file read with pread (not mmap), with glibc's mmap threshold fixed:

| precision | method | weights | load peak | against fp32 |
| --- | --- | ---: | ---: | ---: |
{peak_table}

Each CPU precision against fp32 (teacher-forced top-1 agreement and logit cosine over 4 prompts
× 48 tokens; 64 greedy tokens for speed; RSS growth includes what loading left behind):

| precision | method | tokens/s | weights | RSS growth | top-1 agreement | logit cosine |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
{table}
""",
    )


if __name__ == "__main__":
    main()
