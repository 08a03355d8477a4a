"""The llama.cpp engine on SmolLM2's own GGUF, in-process: a generate job keeps on it what it
has on transformers (token events, seed, stop strings, cancel, time limit, plan), and jobs
decoded together give what each gives alone."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from celery.exceptions import SoftTimeLimitExceeded

from shared import streams
from shared.config import Settings
from shared.kinds import get
from shared.kinds.generate import GenerateParams, gguf_engine_installed
from shared.model_registry import resolve
from tests.support import need
from worker import model_cache
from worker.context import RunContext
from worker.kinds.generate import llama, run
from worker.kinds.generate.decode import generate
from worker.model_cache import ModelError

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPTS = [
    "How many ways are there to climb ten stairs?",
    "The capital of Italy is",
    "def fibonacci(n):",
    "Attention weights say",
]


@pytest.fixture(autouse=True)
def built() -> None:
    if not gguf_engine_installed():
        need("llama.cpp", "`make gguf` builds it into .venv (CI does)")


@pytest.fixture
def settings(tiny_models: Path) -> Settings:
    return Settings(models_dir=tiny_models)


def job(settings: Settings, **given: Any) -> GenerateParams:
    parsed = get("generate").parse({"model": "smollm2-gguf", **given}, settings)  # type: ignore[union-attr]
    assert isinstance(parsed, GenerateParams)
    return parsed


def events(redis: Any, job_id: str, kind: str) -> list[dict[str, Any]]:
    return [d for _, e, d in streams.read(redis, job_id, "0", None) if e == kind]


def test_tokens_stream_as_they_come_and_the_plan_names_llama_cpp(settings: Settings) -> None:
    redis = fakeredis.FakeRedis()
    result = run(job(settings, messages=QUESTION, max_new_tokens=24),
                 RunContext("a", settings, redis)).result  # fmt: skip
    tokens = events(redis, "a", "token")
    assert len(tokens) > 3 and "".join(t["text"] for t in tokens) == result["text"]
    assert result["finish_reason"] in ("stop", "length")
    plan = result["plan"]
    assert plan["engine"] == "llama.cpp" and plan["quantization"] == "Q4_1"
    assert plan["estimated_bytes"] > plan["measured_bytes"] > 0
    gguf = settings.models_dir / "smollm2-gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert result["model_info"]["weights_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert result["model_info"]["random_weights"] is False
    assert result["timings"]["first_token_s"] > 0 and result["timings"]["tokens_per_s"] > 0


def test_the_same_seed_gives_the_same_text(settings: Settings) -> None:
    redis = fakeredis.FakeRedis()
    texts = []
    for seed in (7, 7, 8):
        params = job(settings, prompt="Once upon a time", max_new_tokens=24, temperature=1.0,
                     top_p=0.95, seed=seed)  # fmt: skip
        texts.append(run(params, RunContext(f"s{len(texts)}", settings, redis)).result["text"])
    assert texts[0] == texts[1] != texts[2]


def test_a_stop_string_ends_the_text_before_it(settings: Settings) -> None:
    redis = fakeredis.FakeRedis()
    free = run(job(settings, prompt=PROMPTS[1], max_new_tokens=24),
               RunContext("f", settings, redis)).result["text"]  # fmt: skip
    stop = free.split()[2]  # a word from the middle of the greedy text
    stopped = run(job(settings, prompt=PROMPTS[1], max_new_tokens=24, stop=[stop]),
                  RunContext("g", settings, redis)).result  # fmt: skip
    assert stopped["finish_reason"] == "stop"
    assert stopped["text"] == free[: free.index(stop)]
    assert stop not in "".join(t["text"] for t in events(redis, "g", "token"))


class CancelAfter(RunContext):
    """A client that cancels once the stream shows 10 tokens generated, noting how many."""

    seen = 0

    def cancelled(self) -> bool:
        counts = [d["n"] for d in events(self.redis, self.job_id, "token")]
        if not self.seen and counts and max(counts) >= 10:
            self.seen = max(counts)
        return bool(self.seen)


def test_cancel_stops_within_two_tokens(settings: Settings) -> None:
    context = CancelAfter("c", settings, fakeredis.FakeRedis())
    result = run(job(settings, prompt="Go on and on:", max_new_tokens=1000), context).result
    assert result["finish_reason"] == "cancelled"
    assert 10 <= context.seen <= result["tokens"]["completion"] <= context.seen + 2


def test_a_job_past_its_time_limit_ends_as_a_timeout(settings: Settings) -> None:
    late = RunContext("late", settings, fakeredis.FakeRedis(), deadline=time.monotonic() - 1)
    with pytest.raises(SoftTimeLimitExceeded):
        run(job(settings, prompt="x", max_new_tokens=500), late)


def test_jobs_decoded_together_give_each_the_text_it_gets_alone(settings: Settings) -> None:
    generator = llama.load(resolve("smollm2-gguf", settings.models_dir), batch=4)
    redis = fakeredis.FakeRedis()
    jobs = [job(settings, prompt=p, max_new_tokens=20) for p in PROMPTS]
    alone = [generate(p, generator, RunContext(f"a{i}", settings, redis))["text"]
             for i, p in enumerate(jobs)]  # fmt: skip
    results: list[dict[str, Any]] = [{} for _ in jobs]

    def one(i: int) -> None:
        results[i] = generate(jobs[i], generator, RunContext(f"t{i}", settings, redis))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert max(r["timings"]["batch_size_max"] for r in results) > 1
    assert [r["text"] for r in results] == alone


def test_a_prompt_longer_than_the_context_fails_with_its_length(settings: Settings) -> None:
    generator = llama.load(resolve("smollm2-gguf", settings.models_dir), batch=1)
    context = RunContext("long", settings, fakeredis.FakeRedis())
    with pytest.raises(ModelError, match=r"the prompt is \d+ tokens; .* context on llama.cpp is"):
        generate(job(settings, prompt="stairs " * 3000), generator, context)
    # The engine goes on serving.
    ok = generate(job(settings, prompt="x", max_new_tokens=3), generator, context)
    assert ok["tokens"]["completion"] == 3


def test_auto_on_the_cpu_runs_a_model_on_its_gguf_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    """make install places smollm2 and its GGUF, which says it holds the same weights."""
    monkeypatch.setattr(model_cache, "_cache", None)
    settings = Settings(models_dir=Path("var/models"))
    redis = fakeredis.FakeRedis()
    auto = run(job(settings, model="smollm2", prompt="Hi", max_new_tokens=2),
               RunContext("t", settings, redis)).result  # fmt: skip
    assert auto["model"] == "smollm2-gguf" and auto["plan"]["engine"] == "llama.cpp"
    fp32 = run(job(settings, model="smollm2", prompt="Hi", max_new_tokens=2, quantization="fp32"),
               RunContext("u", settings, redis)).result  # fmt: skip
    assert fp32["model"] == "smollm2" and fp32["plan"]["engine"] == "transformers"
