"""The quantization planner against ChatGLM-6B's published figures and the seed's machines."""

from __future__ import annotations

import pytest

from shared.gguf_file import GgufInfo
from shared.planner import (
    MIN_AGREEMENT,
    ModelShape,
    PlanRefused,
    capabilities,
    estimate,
    plan,
    plan_gguf,
)

GB = 1e9
# ChatGLM-6B: 6.2 B parameters, 28 layers, hidden 4096, a 130,528-token vocabulary.
CHATGLM_6B = ModelShape(
    parameters=6_173_000_000, embedding_parameters=130_528 * 4096, layers=28, hidden=4096
)


@pytest.mark.parametrize(
    ("precision", "device", "published_gb"),
    [("fp16", "gpu", 13), ("int8", "gpu", 8), ("int4", "gpu", 6), ("fp32", "cpu", 32)],
)
def test_estimates_match_chatglm_6b_published_figures(
    precision: str, device: str, published_gb: float
) -> None:
    # The published figures are rounded "about" numbers: within a fifth is agreement.
    assert estimate(CHATGLM_6B, precision, device) / GB == pytest.approx(published_gb, rel=0.2)


@pytest.mark.parametrize(
    ("device", "free_gb", "chosen", "method"),
    [
        ("gpu", 24, "bf16", "native"),
        ("gpu", 12, "int8", "bitsandbytes-int8"),
        ("gpu", 5.8, "int4", "bitsandbytes-nf4"),  # the seed's 6 GB card
        ("cpu", 64, "fp32", "native"),
        ("cpu", 20, "bf16", "native"),
        ("cpu", 10, "int8", "torchao-int8-weight-only"),
        ("cpu", 7, "int4", "torchao-int4-weight-only"),
    ],
)
def test_auto_picks_the_most_faithful_precision_that_fits(
    device: str, free_gb: float, chosen: str, method: str
) -> None:
    result = plan(CHATGLM_6B, device, int(free_gb * GB))
    assert (result.quantization, result.method) == (chosen, method)
    assert result.estimated_bytes <= free_gb * GB * 0.9


def test_a_gpu_without_bf16_gets_fp16() -> None:
    assert plan(CHATGLM_6B, "gpu", int(24 * GB), bf16=False).quantization == "fp16"
    assert capabilities("gpu", bf16=False) == ["fp16", "int8", "int4"]


def test_too_little_memory_is_refused_with_the_numbers() -> None:
    with pytest.raises(PlanRefused, match=r"needs about 5\.2 GB at int4 .* 4\.0 GB is free"):
        plan(CHATGLM_6B, "gpu", int(4 * GB))


def test_an_explicit_precision_is_never_silently_changed() -> None:
    with pytest.raises(PlanRefused, match="cannot run fp16"):
        plan(CHATGLM_6B, "cpu", int(64 * GB), "fp16")
    with pytest.raises(PlanRefused, match="needs about"):
        plan(CHATGLM_6B, "gpu", int(10 * GB), "fp16")  # fits at int8, but fp16 was asked
    assert plan(CHATGLM_6B, "gpu", int(10 * GB), "int8").quantization == "int8"


def test_none_means_full_precision_and_models_may_restrict() -> None:
    assert plan(CHATGLM_6B, "cpu", int(64 * GB), "none").quantization == "fp32"
    assert plan(CHATGLM_6B, "gpu", int(64 * GB), "none").quantization == "bf16"
    assert plan(CHATGLM_6B, "cpu", int(64 * GB), allowed=["int8", "int4"]).quantization == "int8"
    with pytest.raises(PlanRefused, match="allows only"):
        plan(CHATGLM_6B, "cpu", int(64 * GB), "int4", allowed=["int8"])


def test_quantized_plans_compute_in_a_wider_dtype() -> None:
    assert plan(CHATGLM_6B, "cpu", int(10 * GB)).dtype == "bf16"
    assert plan(CHATGLM_6B, "gpu", int(12 * GB)).dtype == "bf16"
    assert plan(CHATGLM_6B, "gpu", int(12 * GB), bf16=False).dtype == "fp16"


def test_auto_takes_a_method_below_the_agreement_bar_only_when_nothing_else_fits() -> None:
    faithful = plan(CHATGLM_6B, "gpu", int(12 * GB))
    assert faithful.quantization == "int8" and faithful.note == ""
    assert faithful.agreement is not None and faithful.agreement >= MIN_AGREEMENT
    last_resort = plan(CHATGLM_6B, "gpu", int(5.8 * GB))
    assert last_resort.method == "bitsandbytes-nf4" and last_resort.agreement < MIN_AGREEMENT
    assert "below 90%: nothing better fits" in last_resort.note
    asked = plan(CHATGLM_6B, "gpu", int(24 * GB), "int4")
    assert "it was asked for" in asked.note
    # On a CPU, int4 (torchao, float zero points) clears the bar: no note.
    assert plan(CHATGLM_6B, "cpu", int(7 * GB)).note == ""


# ChatGLM3-6B as a Q4_0 GGUF: 28 layers, hidden 4096, 2 key-value heads of 32, 65,024 tokens.
CHATGLM3_Q4_0 = GgufInfo(
    size=3_600_000_000,
    file_type="Q4_0",
    metadata={
        "general.architecture": "chatglm",
        "chatglm.block_count": 28,
        "chatglm.embedding_length": 4096,
        "chatglm.attention.head_count": 32,
        "chatglm.attention.head_count_kv": 2,
    },
    lengths={"tokenizer.ggml.tokens": 65_024},
)


def test_a_gguf_plan_is_the_file_as_stored_plus_a_kv_cache_per_sequence() -> None:
    chosen = plan_gguf(CHATGLM3_Q4_0, free_bytes=int(16 * GB), sequences=8)
    assert (chosen.engine, chosen.quantization, chosen.device) == ("llama.cpp", "Q4_0", "cpu")
    # 3.6 GB of weights, 8 × 2,048 tokens × 28 KB of fp16 cache, 133 MB of compute buffer.
    assert chosen.estimated_bytes / GB == pytest.approx(4.4, abs=0.1)
    one = plan_gguf(CHATGLM3_Q4_0, free_bytes=int(16 * GB), sequences=1)
    assert one.estimated_bytes < chosen.estimated_bytes


def test_a_gguf_plan_that_does_not_fit_says_what_it_needs() -> None:
    with pytest.raises(
        PlanRefused, match=r"the Q4_0 GGUF model needs about 4.4 GB for 8 sequences"
    ):
        plan_gguf(CHATGLM3_Q4_0, free_bytes=int(4 * GB), sequences=8)
