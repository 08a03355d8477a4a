"""Load a causal LM the way its plan says: a native dtype, torchao int8 or int4 (CPU), or
bitsandbytes (GPU), quantizing each weight as it is read."""

from __future__ import annotations

import contextlib
import ctypes
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from shared.model_registry import ModelEntry, model_config
from shared.planner import ModelShape, Plan, plan
from worker.device import available_bytes, peak_rss_bytes, reset_peak_rss, rss_bytes
from worker.kinds.generate.batch import Engine, TransformersEngine
from worker.model_cache import ModelError, model_bytes, weights_sha256

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Generator:
    """A loaded causal LM, its tokenizer, and the plan it was loaded with (transformers here,
    or llama.cpp: see worker.kinds.generate.llama)."""

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
    eos_ids: set[int]
    """The tokens that end a text."""
    device: torch.device
    """Where logits are, for the samplers."""
    load_peak_bytes: int = 0
    """The most memory the load held at once, measured: peak CUDA memory, or the process's
    peak RSS above what it had before the load."""


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


def load(entry: ModelEntry, pool: str, requested: str, trust: bool, batch: int = 1) -> Generator:
    """Plan for this device's free memory (and a 2,048-token context), then load to the plan;
    up to `batch` jobs decode together on it. Quantized plans quantize each weight as it is
    read, so the full-precision weights are never all in memory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device_of(pool)
    shape = shape_of(entry, trust)
    bf16 = device == "cpu" or torch.cuda.is_bf16_supported()
    allowed = entry.meta.get("precisions")
    chosen = plan(shape, device, free_bytes(device), requested, allowed, bf16)
    started, rss_before = time.perf_counter(), rss_bytes()
    if device == "gpu":
        torch.cuda.reset_peak_memory_stats()
    else:
        keep_heap_small()
        reset_peak_rss()
    kwargs: dict[str, Any] = {
        "trust_remote_code": trust,
        "local_files_only": True,
        "dtype": DTYPES[chosen.dtype],
        "device_map": {"": "cuda:0" if device == "gpu" else "cpu"},
    }
    quantization = quantization_config(chosen)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    converts = quantization is not None or chosen.dtype != checkpoint_dtype(entry)
    with read_without_mmap(converts and device == "cpu"):
        model = AutoModelForCausalLM.from_pretrained(str(entry.path), **kwargs)
    model.eval()
    if device == "cpu":
        release_freed_memory()
    load_peak = (
        int(torch.cuda.max_memory_allocated())
        if device == "gpu"
        else max(0, peak_rss_bytes() - rss_before)
    )
    tokenizer = AutoTokenizer.from_pretrained(str(entry.path), trust_remote_code=trust)
    return Generator(
        entry=entry,
        model=model,
        tokenizer=tokenizer,
        plan=chosen,
        weights_sha256=weights_sha256(entry),
        nbytes=model_bytes(model),
        rss_before=rss_before,
        load_seconds=time.perf_counter() - started,
        engine=TransformersEngine(model, batch),
        eos_ids=eos_ids(model),
        device=model.device,
        load_peak_bytes=load_peak,
    )


def eos_ids(model: Any) -> set[int]:
    """The ids that end a text, where model.generate reads them: the generation config (built
    from the model's config when the folder has none)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, list) else {eos}


def quantization_config(chosen: Plan) -> Any:
    """transformers' quantization config for a plan's method (None for a native dtype): each
    weight is quantized as it is read."""
    if chosen.method.startswith("bitsandbytes"):
        from transformers import BitsAndBytesConfig

        if chosen.quantization == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=DTYPES[chosen.dtype])  # fmt: skip
    if chosen.method == "torchao-int8-weight-only":
        from torchao.quantization import Int8WeightOnlyConfig
        from transformers import TorchAoConfig

        return TorchAoConfig(Int8WeightOnlyConfig())
    if chosen.method == "torchao-int4-weight-only":
        from torchao.prototype.quantization.int4.inference_workflow import (
            PrototypeInt4WeightOnlyConfig,
        )
        from torchao.quantization.quantize_.workflows import Int4ChooseQParamsAlgorithm
        from transformers import TorchAoConfig

        # Groups of 32 with a float scale and zero point each (tinygemm's CPU layout): 0.990
        # top-1 agreement on SmolLM2, where torchao's integer zero points keep only 0.70.
        return TorchAoConfig(
            PrototypeInt4WeightOnlyConfig(
                group_size=32,
                int4_choose_qparams_algorithm=Int4ChooseQParamsAlgorithm.TINYGEMM,
                set_inductor_config=False,
            )
        )
    return None


def checkpoint_dtype(entry: ModelEntry) -> str | None:
    """The dtype the weights are stored in, as the config says (fp32, bf16, fp16)."""
    config = model_config(entry.path)
    stored = str(config.get("dtype") or config.get("torch_dtype") or "")
    names = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
    return names.get(stored.removeprefix("torch."))


@contextlib.contextmanager
def read_without_mmap(enabled: bool) -> Iterator[None]:
    """Have transformers read the safetensors file with pread instead of mmap while a load
    converts the weights (quantizes or casts them). With mmap every page of the full-precision
    file is touched and counts in the process's memory until the load ends (538 MB for
    SmolLM2 whatever the target); with pread each tensor is read when it is converted. It is
    the backend transformers itself picks on Windows and on Apple GPUs."""
    import transformers.modeling_utils as modeling

    opened = modeling.safe_open
    if not enabled:
        yield
        return

    def safe_open(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("backend") == "mmap":
            kwargs["backend"] = "pread"
        return opened(*args, **kwargs)

    modeling.safe_open = safe_open
    try:
        yield
    finally:
        modeling.safe_open = opened


def keep_heap_small() -> None:
    """glibc raises its mmap threshold as big blocks are freed, then keeps later temporaries on
    a heap it never gives back: a load ends at 2-4x its weights. A fixed threshold (what
    MALLOC_MMAP_THRESHOLD_=131072 sets) returns each big block when it is freed."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)


def release_freed_memory() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


M_MMAP_THRESHOLD = -3


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


def measured_bytes(generator: Generator) -> int:
    """Peak CUDA memory on a GPU; on a CPU, how much the process grew since it began to load
    (weights are memory-mapped, so they count once generation has touched them)."""
    if generator.plan.device == "gpu":
        return int(torch.cuda.max_memory_allocated())
    return max(0, rss_bytes() - generator.rss_before)
