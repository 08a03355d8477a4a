"""Load a causal LM the way its plan says: native dtype, torchao int8, or bitsandbytes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from shared.model_registry import ModelEntry
from shared.planner import ModelShape, Plan, plan
from worker.device import available_bytes, rss_bytes
from worker.kinds.generate.batch import Engine
from worker.model_cache import ModelError, model_bytes, weights_sha256

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Generator:
    """A loaded causal LM, its tokenizer, and the plan it was loaded with."""

    entry: ModelEntry
    model: Any
    tokenizer: Any
    plan: Plan
    weights_sha256: str
    nbytes: int
    rss_before: int
    load_seconds: float
    engine: Engine
    """Decodes this model's jobs together (see worker.kinds.generate.batch)."""


def device_of(pool: str) -> str:
    return "gpu" if pool == "gpu" and torch.cuda.is_available() else "cpu"


def free_bytes(device: str) -> int:
    """CUDA's free memory on a GPU; on a CPU, the kernel's MemAvailable or what the process's
    cgroup (a container's limit) leaves, whichever is smaller."""
    if device == "gpu":
        return int(torch.cuda.mem_get_info()[0])
    available = available_bytes()
    if available is None:
        raise ModelError("cannot read the available memory")
    return available


def shape_of(entry: ModelEntry, trust: bool) -> ModelShape:
    """Parameter counts from the config alone: the model is built on the meta device."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(entry.path, trust_remote_code=trust)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust)
    parameters = sum(p.numel() for p in skeleton.parameters())
    embedding = skeleton.get_input_embeddings().weight.numel()
    text = getattr(config, "text_config", config)
    heads = getattr(text, "num_attention_heads", 1) or 1
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    return ModelShape(
        parameters=parameters,
        embedding_parameters=embedding,
        layers=getattr(text, "num_hidden_layers", getattr(text, "num_layers", 1)),
        hidden=getattr(text, "hidden_size", 1),
        kv_fraction=kv_heads / heads,
    )


def load(
    entry: ModelEntry, pool: str, requested: str, trust: bool, batch: int = 1
) -> Generator:
    """Plan for this device's free memory (and a 2,048-token context), then load to the plan;
    up to `batch` jobs decode together on it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device_of(pool)
    shape = shape_of(entry, trust)
    bf16 = device == "cpu" or torch.cuda.is_bf16_supported()
    allowed = entry.meta.get("precisions")
    chosen = plan(shape, device, free_bytes(device), requested, allowed, bf16)
    started, rss_before = time.perf_counter(), rss_bytes()
    if device == "gpu":
        torch.cuda.reset_peak_memory_stats()
    kwargs: dict[str, Any] = {"trust_remote_code": trust, "local_files_only": True}
    if chosen.method.startswith("bitsandbytes"):
        from transformers import BitsAndBytesConfig

        compute = DTYPES[chosen.dtype]
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True)
            if chosen.quantization == "int8"
            else BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute
            )
        )
        kwargs["dtype"] = compute
        kwargs["device_map"] = {"": "cuda:0" if device == "gpu" else "cpu"}
    else:
        kwargs["dtype"] = DTYPES[chosen.dtype]
        if device == "gpu":
            kwargs["device_map"] = {"": "cuda:0"}
    model = AutoModelForCausalLM.from_pretrained(str(entry.path), **kwargs)
    if chosen.method == "torchao-int8-weight-only":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(model, Int8WeightOnlyConfig())
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(entry.path), trust_remote_code=trust)
    nbytes = model_bytes(model)
    return Generator(entry, model, tokenizer, chosen, weights_sha256(entry), nbytes, rss_before,
                     time.perf_counter() - started, Engine(model, batch))  # fmt: skip


def measured_bytes(generator: Generator) -> int:
    """Peak CUDA memory on a GPU; on a CPU, how much the process grew since it began to load
    (weights are memory-mapped, so they count once generation has touched them)."""
    if generator.plan.device == "gpu":
        return int(torch.cuda.max_memory_allocated())
    return max(0, rss_bytes() - generator.rss_before)
