"""Continuous batching: jobs decoded together give what each gives alone, and each keeps its
own stop strings, cancel and deadline."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import torch
from redis import exceptions as redis_exceptions

from shared import streams
from shared.config import Settings
from shared.kinds import get
from shared.kinds.generate import GenerateParams
from shared.model_registry import resolve
from worker.context import RunContext
from worker.kinds.generate import loading, run
from worker.kinds.generate.batch import TextStream
from worker.kinds.generate.decode import generate

SMOLLM2 = Path("var/models")
STAIRS = [
    "How many ways are there to climb ten stairs?",
    "Attention weights say",
    "The capital of Italy is",
    "Quantization stores weights in",
    "你好，世界。",
    "int8 or int4 instead of",
    "Which tokens does a transformer look at?",
    "The capital of France is Paris. The capital of",
]


def params(settings: Settings, prompt: str, **given: Any) -> GenerateParams:
    parsed = get("generate").parse({"prompt": prompt, **given}, settings)  # type: ignore[union-attr]
    assert isinstance(parsed, GenerateParams)
    return parsed


def together(
    generator: loading.Generator, jobs: list[GenerateParams], contexts: list[RunContext]
) -> list[dict[str, Any]]:
    """Run the jobs from as many threads at once, as a threads pool would."""
    results: list[dict[str, Any]] = [{} for _ in jobs]

    def one(i: int) -> None:
        results[i] = generate(jobs[i], generator, contexts[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def tokens_of(generator: loading.Generator, prompt: str, text: str) -> list[int]:
    ids: list[int] = generator.tokenizer(prompt + text)["input_ids"]
    return ids


def tied_at(generator: loading.Generator, prompt: str, alone: str, batched: str) -> bool:
    """Whether, where the two texts part, the model's two best next tokens (given the text the
    two still share) are within float noise of each other: only then may batching choose
    differently."""
    shared = 0
    while shared < min(len(alone), len(batched)) and alone[shared] == batched[shared]:
        shared += 1
    ids = generator.tokenizer(prompt + alone[:shared], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        top = generator.model(ids).logits[0, -1].float().topk(2).values
    return bool(top[0] - top[1] < 1e-4 * top[0].abs().clamp(min=1))


def assert_batched_equals_alone(model_dir: Path, model: str, prompts: list[str], new: int) -> None:
    settings = Settings(models_dir=model_dir)
    redis = fakeredis.FakeRedis()
    generator = loading.load(resolve(model, model_dir), "cpu", "fp32", trust=False, batch=8)
    jobs = [params(settings, p, model=model, max_new_tokens=new) for p in prompts]
    alone = [generate(j, generator, RunContext(f"a{i}", settings, redis)) for i, j in
             enumerate(jobs)]  # fmt: skip
    contexts = [RunContext(f"b{i}", settings, redis) for i in range(len(jobs))]
    batched = together(generator, jobs, contexts)
    assert max(r["timings"]["batch_size_max"] for r in batched) > 1
    for prompt, one, many in zip(prompts, alone, batched, strict=True):
        assert one["timings"]["batch_size_max"] == 1
        if one["text"] != many["text"]:
            assert tied_at(generator, prompt, one["text"], many["text"]), (one, many)
        assert one["finish_reason"] == many["finish_reason"]


def test_greedy_text_batched_is_the_text_alone_on_the_tiny_glm4(tiny_models: Path) -> None:
    assert_batched_equals_alone(tiny_models, "tiny-glm4", STAIRS, 32)


def test_greedy_text_batched_is_the_text_alone_on_smollm2() -> None:
    assert_batched_equals_alone(SMOLLM2, "smollm2", STAIRS[:4], 16)


def test_greedy_text_alone_is_what_model_generate_gives(tiny_models: Path) -> None:
    settings = Settings(models_dir=tiny_models)
    generator = loading.load(resolve("tiny-glm4", tiny_models), "cpu", "fp32", trust=False)
    job = params(settings, "Climb", model="tiny-glm4", max_new_tokens=40)
    ours = generate(job, generator, RunContext("g", settings, fakeredis.FakeRedis()))
    ids = generator.tokenizer("Climb", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = generator.model.generate(ids, max_new_tokens=40, do_sample=False)
    theirs = generator.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert ours["text"] == theirs


class CancelledAt(RunContext):
    """A client that cancels once its job has generated `at` tokens."""

    at = 10

    def cancelled(self) -> bool:
        counts = [
            d["n"] for _, e, d in streams.read(self.redis, self.job_id, "0", None) if e == "token"
        ]
        return bool(counts) and max(counts) >= self.at


def test_a_cancel_in_a_batch_stops_that_job_only(tiny_models: Path) -> None:
    settings = Settings(models_dir=tiny_models)
    redis = fakeredis.FakeRedis()
    generator = loading.load(resolve("tiny-glm4", tiny_models), "cpu", "fp32", trust=False, batch=4)
    jobs = [params(settings, p, model="tiny-glm4", max_new_tokens=60) for p in STAIRS[:4]]
    contexts = [RunContext(f"c{i}", settings, redis) for i in range(3)]
    contexts.append(CancelledAt("c3", settings, redis))
    results = together(generator, jobs, contexts)
    assert [r["finish_reason"] for r in results] == ["length"] * 3 + ["cancelled"]
    assert 10 <= results[3]["tokens"]["completion"] <= 12
    assert [r["tokens"]["completion"] for r in results[:3]] == [60] * 3


def test_a_job_past_its_deadline_ends_as_a_timeout_and_the_others_go_on(
    tiny_models: Path,
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    settings = Settings(models_dir=tiny_models)
    redis = fakeredis.FakeRedis()
    generator = loading.load(resolve("tiny-glm4", tiny_models), "cpu", "fp32", trust=False, batch=2)
    late = RunContext("late", settings, redis, deadline=time.monotonic() - 1)
    errors: list[BaseException] = []

    def run_late() -> None:
        try:
            generate(params(settings, "x", model="tiny-glm4", max_new_tokens=500), generator, late)
        except SoftTimeLimitExceeded as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_late)
    thread.start()
    ok = generate(params(settings, "y", model="tiny-glm4", max_new_tokens=30), generator,
                  RunContext("ok", settings, redis))  # fmt: skip
    thread.join(timeout=60)
    assert len(errors) == 1 and ok["finish_reason"] == "length"


def test_seeded_sampling_batched_draws_what_it_draws_alone(tiny_models: Path) -> None:
    settings = Settings(models_dir=tiny_models)
    redis = fakeredis.FakeRedis()
    generator = loading.load(resolve("tiny-glm4", tiny_models), "cpu", "fp32", trust=False, batch=4)
    jobs = [params(settings, p, model="tiny-glm4", max_new_tokens=24, temperature=0.8, top_p=0.9,
                   top_k=40, seed=i) for i, p in enumerate(STAIRS[:4])]  # fmt: skip
    alone = [generate(j, generator, RunContext(f"s{i}", settings, redis))["text"]
             for i, j in enumerate(jobs)]  # fmt: skip
    batched = together(generator, jobs, [RunContext(f"t{i}", settings, redis) for i in range(4)])
    assert [r["text"] for r in batched] == alone
    assert len(set(alone)) == 4


class Sent(RunContext):
    def __init__(self) -> None:
        super().__init__("t", Settings(), fakeredis.FakeRedis())
        self.pieces: list[str] = []

    def publish(self, event: str, data: dict[str, Any]) -> str:
        self.pieces.append(data["text"])
        return "0-0"


@pytest.mark.parametrize(
    ("growing", "stops", "streamed", "final"),
    [
        (["The cap", "The capital of Fr", "The capital of France is Par", "The capital of "
          "France is Paris."], ["Paris"], "The capital of France is ", "The capital of France is "),
        (["a", "ab", "abc", "abcd"], ["xyz"], "abcd", "abcd"),
        (["He said <", "He said <|e", "He said <|x"], ["<|end|>"], "He said <|x", "He said <|x"),
    ],
)  # fmt: skip
def test_text_that_may_begin_a_stop_string_waits_and_a_stop_never_streams(
    growing: list[str], stops: list[str], streamed: str, final: str
) -> None:
    context = Sent()
    texts = iter(growing)
    stream = TextStream(lambda ids: next(texts), context, stops)
    for n in range(len(growing)):
        stream.update(list(range(n + 1)))
        if stream.stopped:
            break
    stream.close()
    assert "".join(context.pieces) == streamed and stream.text == final


class BreaksOnce:
    """The model, but its third forward raises, as an out-of-memory would."""

    def __init__(self, model: Any) -> None:
        self.model, self.device, self.calls = model, model.device, 0

    def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("out of memory (a test's)")
        return self.model(**kwargs)


def test_a_failed_step_fails_its_jobs_and_the_engine_goes_on(tiny_models: Path) -> None:
    settings = Settings(models_dir=tiny_models)
    redis = fakeredis.FakeRedis()
    generator = loading.load(resolve("tiny-glm4", tiny_models), "cpu", "fp32", trust=False, batch=2)
    generator.engine.model = BreaksOnce(generator.model)
    job = params(settings, "Climb", model="tiny-glm4", max_new_tokens=20)
    with pytest.raises(RuntimeError, match="out of memory"):
        generate(job, generator, RunContext("x", settings, redis))
    again = generate(job, generator, RunContext("y", settings, redis))
    assert again["finish_reason"] == "length" and again["tokens"]["completion"] == 20


def test_a_batch_below_one_stops_the_worker_at_its_start() -> None:
    from worker.factory import create_celery

    with pytest.raises(ValueError, match="LADDER_GENERATE_BATCH"):
        create_celery(Settings.from_env({"LADDER_GENERATE_BATCH": "0"}))


def test_jobs_on_different_plans_never_share_a_batch(tiny_models: Path) -> None:
    settings = Settings(models_dir=tiny_models)
    redis = fakeredis.FakeRedis()
    jobs = [params(settings, p, model="tiny-glm4", max_new_tokens=40, quantization=q)
            for p, q in zip(STAIRS[:4], ["fp32", "bf16", "fp32", "bf16"], strict=True)]  # fmt: skip
    contexts = [RunContext(f"p{i}", settings, redis) for i in range(4)]
    results: list[dict[str, Any]] = [{} for _ in jobs]

    def one(i: int) -> None:
        results[i] = run(jobs[i], contexts[i]).result

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r["plan"]["quantization"] for r in results] == ["fp32", "bf16", "fp32", "bf16"]
    assert all(r["timings"]["batch_size_max"] <= 2 for r in results)


class RedisAway(RunContext):
    """Redis stops answering for this job's 5th to 10th tokens."""

    calls = 0

    def publish(self, event: str, data: dict[str, Any]) -> str:
        if event == "token":
            self.calls += 1
            if 5 <= self.calls <= 10:
                raise redis_exceptions.ConnectionError("Redis is restarting (a test's)")
        return super().publish(event, data)


def test_redis_away_for_a_few_tokens_stops_no_job_and_loses_no_text(tiny_models: Path) -> None:
    settings = Settings(models_dir=tiny_models)
    redis = fakeredis.FakeRedis()
    generator = loading.load(resolve("tiny-glm4", tiny_models), "cpu", "fp32", trust=False, batch=2)
    job = params(settings, "Climb", model="tiny-glm4", max_new_tokens=30)
    contexts = [RedisAway("r0", settings, redis), RunContext("r1", settings, redis)]
    results = together(generator, [job, job], contexts)
    assert [r["finish_reason"] for r in results] == ["length", "length"]
    sent = [d["text"] for _, e, d in streams.read(redis, "r0", "0", None) if e == "token"]
    assert "".join(sent) == results[0]["text"]
