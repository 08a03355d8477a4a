"""Generation in-process: streaming, seeds, stop strings, cancel, and quantization fidelity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest
import torch

from shared import streams
from shared.config import Settings
from shared.kinds import InvalidParams, get
from shared.kinds.generate import GenerateParams
from shared.model_registry import resolve
from worker import model_cache
from worker.context import RunContext
from worker.kinds.generate import loading, run
from worker.kinds.generate.decode import prompt_text

SMOLLM2 = Path("var/models")


@pytest.fixture
def tiny_dir(tiny_models: Path) -> Path:
    return tiny_models


@pytest.fixture
def redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def job(settings: Settings, **given: Any) -> GenerateParams:
    params = get("generate").parse(given, settings)  # type: ignore[union-attr]
    assert isinstance(params, GenerateParams)
    return params


def tokens_of(redis: fakeredis.FakeRedis, job_id: str) -> list[str]:
    return [d["text"] for _, e, d in streams.read(redis, job_id, "0", None) if e == "token"]


def test_tokens_stream_in_order_and_add_up_to_the_text(tiny_dir: Path, redis: Any) -> None:
    settings = Settings(models_dir=tiny_dir)
    params = job(settings, prompt="Climb the stairs", model="tiny-glm4", max_new_tokens=40)
    result = run(params, RunContext("a", settings, redis)).result
    assert result["finish_reason"] == "length"
    assert result["tokens"]["completion"] == 40
    assert "".join(tokens_of(redis, "a")) == result["text"]
    events = [e for _, e, _ in streams.read(redis, "a", "0", None)]
    assert events[0] == "stage" and events[-1] == "end"
    assert result["model_info"]["random_weights"] is True
    assert result["plan"]["device"] == "cpu" and result["plan"]["quantization"] == "fp32"
    assert result["timings"]["tokens_per_s"] > 0


def test_the_same_seed_and_plan_give_the_same_text(tiny_dir: Path, redis: Any) -> None:
    settings = Settings(models_dir=tiny_dir)
    texts = []
    for seed in (7, 7, 8):
        params = job(settings, prompt="Hi", model="tiny-glm4", max_new_tokens=30, temperature=1.0,
                     top_p=0.9, top_k=50, seed=seed)  # fmt: skip
        texts.append(run(params, RunContext(f"s{len(texts)}", settings, redis)).result["text"])
    assert texts[0] == texts[1] != texts[2]


class CancelAfter(RunContext):
    """A client that cancels once the stream shows 10 tokens generated, noting how many."""

    seen = 0

    def cancelled(self) -> bool:
        counts = [
            d["n"] for _, e, d in streams.read(self.redis, self.job_id, "0", None) if e == "token"
        ]
        if not self.seen and counts and max(counts) >= 10:
            self.seen = max(counts)
        return bool(self.seen)


def test_cancel_stops_within_a_couple_of_tokens(tiny_dir: Path, redis: Any) -> None:
    settings = Settings(models_dir=tiny_dir)
    params = job(settings, prompt="Go", model="tiny-glm4", max_new_tokens=2000)
    context = CancelAfter("c", settings, redis)
    result = run(params, context).result
    assert result["finish_reason"] == "cancelled"
    assert 10 <= context.seen <= result["tokens"]["completion"] <= context.seen + 2


def test_chat_messages_use_the_models_template(tiny_dir: Path) -> None:
    settings = Settings(models_dir=tiny_dir)
    generator = loading.load(resolve("tiny-glm4", tiny_dir), "cpu", "auto", trust=False)
    params = job(settings, model="tiny-glm4", messages=[{"role": "user", "content": "你好"}])
    assert prompt_text(params, generator) == "[gMASK]<sop><|user|>\n你好<|assistant|>\n"
    generator.entry.meta["chat_format"] = "chatglm2"
    assert prompt_text(params, generator) == "[Round 1]\n\n问：你好\n\n答："


def test_a_plan_that_cannot_fit_is_refused(
    tiny_dir: Path, redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(models_dir=tiny_dir, model_cache_bytes=0)
    monkeypatch.setattr(model_cache, "_cache", None)  # not a model another test left loaded
    monkeypatch.setattr(loading, "free_bytes", lambda device: 1000)
    params = job(settings, prompt="x", model="tiny-glm4", quantization="fp32")
    with pytest.raises(InvalidParams, match="needs about"):
        run(params, RunContext("r", settings, redis))


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# fp32 names transformers' engine: with llama.cpp installed, auto runs smollm2's GGUF twin.
ON_TRANSFORMERS = {"quantization": "fp32"}


def test_smollm2_knows_the_capital_of_france(redis: Any) -> None:
    settings = Settings(models_dir=SMOLLM2)
    params = job(settings, messages=QUESTION, max_new_tokens=24, **ON_TRANSFORMERS)
    result = run(params, RunContext("p", settings, redis)).result
    assert "Paris" in result["text"]
    assert result["finish_reason"] == "stop"
    assert result["model"] == "smollm2" and result["model_info"]["random_weights"] is False


def test_stop_strings_end_the_text_before_them(redis: Any) -> None:
    settings = Settings(models_dir=SMOLLM2)
    params = job(settings, messages=QUESTION, max_new_tokens=24, stop=["Paris"], **ON_TRANSFORMERS)
    result = run(params, RunContext("q", settings, redis)).result
    assert result["text"] == "The capital of France is "
    assert result["finish_reason"] == "stop"


PROMPTS = [
    "The history of the stairs begins",
    "Attention, in a transformer, means",
    "def fibonacci(n):",
    "The best way to learn a language is",
]


def agreement(full: loading.Generator, small: loading.Generator) -> float:
    """Free-running greedy texts diverge after the first differing token, so each model
    predicts the next token along the same fp32 continuation, and the top-1s are compared."""
    agree = total = 0
    for prompt in PROMPTS:
        ids = full.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            sequence = full.model.generate(ids, max_new_tokens=48, do_sample=False)
            expected = full.model(sequence).logits[0, ids.shape[1] - 1 : -1].argmax(-1)
            got = small.model(sequence).logits[0, ids.shape[1] - 1 : -1].argmax(-1)
        agree += int((expected == got).sum())
        total += expected.numel()
    return agree / total


@pytest.mark.parametrize(
    ("precision", "method", "share"),
    [("int8", "torchao-int8-weight-only", 0.35), ("int4", "torchao-int4-weight-only", 0.25)],
)
def test_quantized_cpu_plans_agree_with_fp32_and_hold_a_fraction_of_its_bytes(
    precision: str, method: str, share: float
) -> None:
    entry = resolve("smollm2", SMOLLM2)
    full = loading.load(entry, "cpu", "fp32", trust=False)
    small = loading.load(entry, "cpu", precision, trust=False)
    assert small.plan.method == method and small.plan.note == ""
    assert agreement(full, small) >= 0.93
    assert small.nbytes < share * full.nbytes
    # Quantized as the weights were read: the load never held fp32's 538 MB at once.
    assert small.load_peak_bytes < 0.5 * full.nbytes
