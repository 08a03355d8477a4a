"""The quantization planner: which precision a model runs in on a device, and what it costs.

Pure Python (the API uses it to refuse what a device cannot do; the worker to plan a load).
Estimates follow the published ChatGLM-6B figures: about 13 GB at FP16, 8 GB at INT8 and 6 GB
at INT4 on a GPU, and 32 GB in fp32 on a CPU. Quantizing keeps the embeddings and the output
head in 16 bits (as bitsandbytes and torchao do); the KV cache for the context and about 5%
for activations and the allocator come on top.

`auto` picks the most faithful precision that fits with headroom. The order is by fidelity
measured on SmolLM2-135M against fp32 (teacher-forced top-1 agreement): bf16 0.987, torchao
int8 weight-only 0.967, bitsandbytes 8-bit 0.941, bitsandbytes NF4 0.822; torch's dynamic int8
(0.48) wrecks the model and is never used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

PRECISIONS = ("auto", "none", "fp32", "bf16", "fp16", "int8", "int4")

# What each device can run, most faithful first, with the method that does it.
METHODS: dict[str, dict[str, str]] = {
    "gpu": {
        "bf16": "native",
        "fp16": "native",
        "int8": "bitsandbytes-int8",
        "int4": "bitsandbytes-nf4",
    },
    "cpu": {
        "fp32": "native",
        "bf16": "native",
        "int8": "torchao-int8-weight-only",
        "int4": "bitsandbytes-nf4",
    },
}
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "int8": 8, "int4": 4}
HEADROOM = 0.9
"""A plan must fit in this share of the free memory."""
ACTIVATION_OVERHEAD = 1.05


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs to know of a model, from its config."""

    parameters: int
    embedding_parameters: int
    layers: int
    hidden: int
    context: int = 2048
    kv_fraction: float = 1.0
    """num_key_value_heads / num_attention_heads: grouped-query attention shrinks the cache."""


@dataclass(frozen=True)
class Plan:
    """How a model will be loaded."""

    device: str
    dtype: str
    quantization: str
    method: str
    estimated_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PlanRefused(ValueError):
    """The device cannot run the model in the precision asked for (or in any)."""


def estimate(shape: ModelShape, precision: str, device: str) -> int:
    """Bytes of memory a model needs on a device at a precision, loaded and generating."""
    bits = BITS[precision]
    if bits < 16:
        body = shape.parameters - shape.embedding_parameters
        weights = body * bits / 8 + shape.embedding_parameters * 2
    else:
        weights = shape.parameters * bits / 8
    cache_bits = 32 if device == "cpu" and bits == 32 else 16
    kv = 2 * shape.layers * shape.hidden * shape.kv_fraction * shape.context * cache_bits / 8
    return int((weights + kv) * ACTIVATION_OVERHEAD)


def capabilities(device: str, bf16: bool = True) -> list[str]:
    """The precisions a device runs, most faithful first (older GPUs lack bf16)."""
    return [p for p in METHODS[device] if bf16 or p != "bf16"]


def resolve_precision(requested: str, device: str, bf16: bool = True) -> list[str]:
    """The precisions to try for a request, in order; PlanRefused for one the device lacks."""
    can = capabilities(device, bf16)
    if requested == "auto":
        return can
    if requested == "none":
        return can[:1]  # full precision: bf16 (or fp16) on a GPU, fp32 on a CPU
    if requested not in can:
        raise PlanRefused(
            f"a {device.upper()} here cannot run {requested}; it can run {', '.join(can)}"
        )
    return [requested]


def plan(
    shape: ModelShape,
    device: str,
    free_bytes: int,
    requested: str = "auto",
    allowed: list[str] | None = None,
    bf16: bool = True,
) -> Plan:
    """The most faithful precision that fits in `free_bytes`, or PlanRefused saying why."""
    candidates = resolve_precision(requested, device, bf16)
    if allowed is not None:
        candidates = [c for c in candidates if c in allowed] or candidates[:0]
        if not candidates:
            raise PlanRefused(f"the model allows only {', '.join(allowed)}")
    budget = free_bytes * HEADROOM
    for precision in candidates:
        need = estimate(shape, precision, device)
        if need <= budget:
            return Plan(device, compute_dtype(precision, device, bf16), precision,
                        METHODS[device][precision], need)  # fmt: skip
    smallest = candidates[-1]
    raise PlanRefused(
        f"the model needs about {_gb(estimate(shape, smallest, device))} at {smallest} on the "
        f"{device.upper()}, and {_gb(free_bytes)} is free "
        f"(plans leave {1 - HEADROOM:.0%} of it spare)"
    )


def compute_dtype(precision: str, device: str, bf16: bool) -> str:
    """The dtype activations run in: quantized weights are dequantized to it on the fly."""
    if BITS[precision] >= 16:
        return precision
    if device == "cpu":
        return "fp32"
    return "bf16" if bf16 else "fp16"


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"
