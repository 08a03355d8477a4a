"""The quantization planner: which precision a model runs in on a device, and what it costs.

Pure Python (the API uses it to refuse what a device cannot do; the worker to plan a load).
Estimates follow the published ChatGLM-6B figures: about 13 GB at FP16, 8 GB at INT8 and 6 GB
at INT4 on a GPU, and 32 GB in fp32 on a CPU. Quantizing keeps the embeddings and the output
head in 16 bits (as bitsandbytes and torchao do); the KV cache for the context and about 5%
for activations and the allocator come on top.

`auto` picks the most faithful precision that fits with headroom, among the methods that keep
at least MIN_AGREEMENT of full precision's next-token choices; one below that only when nothing
else fits, and the plan says so. Agreement is teacher-forced top-1 agreement with fp32 on
SmolLM2-135M (bench/generate.py, bench/quantization_probe.py): bf16 0.974, torchao int8
weight-only 0.953, torchao int4 weight-only (groups of 32, float zero points, bf16 activations)
0.990, bitsandbytes 8-bit 0.941, bitsandbytes NF4 0.822 (0.755 on chat prompts); torch's
dynamic int8 (0.48) wrecks the model and is never used. On a CPU both quantized methods
quantize each weight as it is read, so the fp32 weights are never all in memory at once.

A GGUF model runs as its file stores it (Q4_0, Q4_1, Q8_0, Q4_K_M…), on llama.cpp: its plan
only checks that the file and the KV cache of every sequence fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.gguf_file import GgufInfo

PRECISIONS = ("auto", "none", "fp32", "bf16", "fp16", "int8", "int4")
MIN_AGREEMENT = 0.90


@dataclass(frozen=True)
class Method:
    """How a device runs a precision."""

    name: str
    bits: float
    """Bits stored per weight of the layers' linear maps, scales and zero points included."""
    agreement: float | None
    """Teacher-forced top-1 agreement with fp32 on SmolLM2-135M; None where unmeasured."""


# What each device can run, most faithful first.
METHODS: dict[str, dict[str, Method]] = {
    "gpu": {
        "bf16": Method("native", 16, 0.974),
        "fp16": Method("native", 16, None),
        "int8": Method("bitsandbytes-int8", 8, 0.941),
        "int4": Method("bitsandbytes-nf4", 4.13, 0.822),  # blocks of 64, double quantization
    },
    "cpu": {
        "fp32": Method("native", 32, 1.0),
        "bf16": Method("native", 16, 0.974),
        "int8": Method("torchao-int8-weight-only", 8, 0.953),
        "int4": Method("torchao-int4-weight-only", 5, 0.990),  # a bf16 scale and zero per 32
    },
}
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
    agreement: float | None = None
    """The method's measured agreement with full precision (see the module's docstring)."""
    note: str = ""
    """Why a method below MIN_AGREEMENT was chosen, when it was."""
    engine: str = "transformers"
    """What runs the model: transformers, or llama.cpp for a GGUF file."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PlanRefused(ValueError):
    """The device cannot run the model in the precision asked for (or in any)."""


def estimate(shape: ModelShape, precision: str, device: str) -> int:
    """Bytes of memory a model needs on a device at a precision, loaded and generating."""
    bits = METHODS[device][precision].bits
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
    fitting = [p for p in candidates if estimate(shape, p, device) <= budget]
    faithful = [p for p in fitting if _faithful(METHODS[device][p])]
    if faithful or fitting:
        precision = (faithful or fitting)[0]
        method = METHODS[device][precision]
        note = ""
        if not _faithful(method):
            note = (
                f"{method.name} keeps {method.agreement:.0%} of full precision's next-token "
                f"choices, below {MIN_AGREEMENT:.0%}: "
                + ("it was asked for" if requested == precision else "nothing better fits")
            )
        return Plan(device, compute_dtype(precision, device, bf16), precision, method.name,
                    estimate(shape, precision, device), method.agreement, note)  # fmt: skip
    smallest = candidates[-1]
    raise PlanRefused(
        f"the model needs about {_gb(estimate(shape, smallest, device))} at {smallest} on the "
        f"{device.upper()}, and {_gb(free_bytes)} is free "
        f"(plans leave {1 - HEADROOM:.0%} of it spare)"
    )


def plan_gguf(
    info: GgufInfo, free_bytes: int, sequences: int, context: int = 2048, chunk: int = 512
) -> Plan:
    """The plan for a GGUF file on the CPU: its weights as stored (the file's size), an fp16
    KV cache of `context` tokens for each of `sequences` decoded together, and llama.cpp's
    compute buffer, which holds the logits of a `chunk` of prompt tokens (103 MB of SmolLM2's
    600 MB estimate; 500 MB measured); PlanRefused when that does not fit in `free_bytes`."""
    heads = info.number("attention.head_count", 1) or 1
    kv_fraction = info.number("attention.head_count_kv", heads) / heads
    cache = 2 * info.number("block_count") * info.number("embedding_length") * kv_fraction
    vocabulary = info.lengths.get("tokenizer.ggml.tokens", 0)
    need = int((info.size + cache * context * sequences * 2) * ACTIVATION_OVERHEAD)
    need += chunk * vocabulary * 4
    if need > free_bytes * HEADROOM:
        raise PlanRefused(
            f"the {info.file_type} GGUF model needs about {_gb(need)} for {sequences} "
            f"sequences of {context} tokens, and {_gb(free_bytes)} is free "
            f"(plans leave {1 - HEADROOM:.0%} of it spare)"
        )
    return Plan("cpu", "fp32", info.file_type, "gguf", need, engine="llama.cpp")


def _faithful(method: Method) -> bool:
    return method.agreement is None or method.agreement >= MIN_AGREEMENT


def compute_dtype(precision: str, device: str, bf16: bool) -> str:
    """The dtype activations run in: quantized weights are dequantized to it on the fly (bf16
    on a CPU too, where torchao's int4 kernel is fastest with bf16 activations)."""
    if METHODS[device][precision].bits >= 16:
        return precision
    return "bf16" if bf16 else "fp16"


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"
