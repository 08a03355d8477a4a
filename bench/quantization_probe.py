"""Quantization probe on the CPU, SmolLM2-135M-Instruct (real weights).

Task 1: int4 (and int8) methods against fp32: teacher-forced top-1 agreement and logit cosine
(same prompts and method as bench/generate.py: 4 prompts, 48 greedy fp32 tokens each, logits of
the whole sequence compared position by position), weight bytes (looking inside tensor
subclasses, as worker/model_cache.py's tensor_bytes does), and tokens/s for 64 greedy tokens.

Task 2: quantize while loading (transformers' TorchAoConfig with a torchao config object) and
the peak memory of each way to load, each in a fresh subprocess: peak = VmHWM (reset just before
the load, taken after the load and one short generate) minus VmRSS before the load (after the
imports); a sampling thread records the largest RssAnon and RssFile separately.

    .venv/bin/python bench/quantization_probe.py            # both tasks
    .venv/bin/python bench/quantization_probe.py task1      # or task2
    .venv/bin/python bench/quantization_probe.py task1 --only "cpu int4,int8"   # substrings

The model is SmolLM2-135M-Instruct converted from a GGUF: its linear weights sit exactly on a
Q4_1 grid (4-bit asymmetric blocks of 32 along the input dimension, float scale and float min)
and its embedding (tied to lm_head) on a Q8_0 grid (symmetric int8 blocks of 32, float scale).
A 4-bit method whose zero point is a float (torchao's CPU tinygemm layout, Int4OpaqueTensor) can
represent the linears losslessly; torchao's Intx int4 has an integer zero point and cannot.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import PROMPT, PROMPTS  # noqa: E402 - the same prompts, so figures compare

MODEL = Path(os.environ.get("LADDER_MODELS_DIR", ROOT / "var" / "models")) / "smollm2"
THREADS = int(os.environ.get("PROBE_THREADS", "2"))


# --------------------------------------------------------------------------- shared pieces


def tensor_bytes(tensor: Any) -> int:
    """Bytes a tensor holds, looking inside quantized tensor subclasses (as model_cache does).
    bitsandbytes' Params4bit is a plain tensor subclass holding packed uint8 data; its
    quant_state (absmax, and with double quantization the nested absmax and code) is added."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    size = int(tensor.numel() * tensor.element_size())
    state = getattr(tensor, "quant_state", None)
    if state is not None:
        for part in (state.absmax, getattr(state, "code", None), getattr(state, "offset", None)):
            if isinstance(part, torch.Tensor):
                size += part.numel() * part.element_size()
        nested = getattr(state, "state2", None)
        if nested is not None:
            for part in (nested.absmax, nested.code):
                size += part.numel() * part.element_size()
    return size


def model_bytes(model: Any) -> int:
    return sum(tensor_bytes(p) for p in model.parameters())


def status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0]) * 1024
    return out


def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MODEL))


def load(dtype: torch.dtype = torch.float32, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(str(MODEL), dtype=dtype, local_files_only=True,
                                                 **kwargs)  # fmt: skip
    return model.eval()


Reference = tuple[list[torch.Tensor], list[int], list[torch.Tensor]]


def reference(tok: Any) -> Reference:
    """fp32 greedy continuations (48 tokens) of the prompts and fp32 logits over them."""
    model = load(torch.float32)
    sequences, starts, logits = [], [], []
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            sequence = model.generate(ids, max_new_tokens=48, do_sample=False)
            start = ids.shape[1] - 1
            logits.append(model(sequence).logits[0, start:-1].float())
        sequences.append(sequence)
        starts.append(start)
    del model
    return sequences, starts, logits


def agreement(model: Any, ref: Reference) -> tuple[float, float]:
    sequences, starts, reference_logits = ref
    agree = total = 0
    cosines = []
    for sequence, start, expected in zip(sequences, starts, reference_logits, strict=True):
        with torch.inference_mode():
            logits = model(sequence).logits[0, start:-1].float()
        agree += int((logits.argmax(-1) == expected.argmax(-1)).sum())
        total += logits.shape[0]
        cosine = torch.nn.functional.cosine_similarity(logits, expected, dim=-1)
        cosines.append(float(cosine.mean()))
    return agree / total, statistics.mean(cosines)


def speed(model: Any, tok: Any) -> float:
    encoded = tok(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        model.generate(**encoded, max_new_tokens=4, do_sample=False)  # warm up
        started = time.perf_counter()
        out = model.generate(**encoded, max_new_tokens=64, min_new_tokens=64, do_sample=False)
    return (out.shape[1] - encoded["input_ids"].shape[1]) / (time.perf_counter() - started)


# --------------------------------------------------------------------------- configs


def is_mlp(module: torch.nn.Module, fqn: str) -> bool:
    return isinstance(module, torch.nn.Linear) and ".mlp." in fqn


def is_attention(module: torch.nn.Module, fqn: str) -> bool:
    return isinstance(module, torch.nn.Linear) and ".self_attn." in fqn


def is_block_linear(module: torch.nn.Module, fqn: str) -> bool:
    """Linears inside the decoder layers: everything but lm_head (tied to the embedding)."""
    return isinstance(module, torch.nn.Linear) and ".layers." in fqn


def int4_cpu(group_size: int = 32, hqq: bool = False) -> Any:
    """torchao's CPU int4: tinygemm layout (Int4OpaqueTensor), asymmetric, float zero point."""
    from torchao.prototype.quantization.int4.inference_workflow import (
        PrototypeInt4WeightOnlyConfig,
    )
    from torchao.quantization.quantize_.workflows import Int4ChooseQParamsAlgorithm

    algorithm = Int4ChooseQParamsAlgorithm.HQQ if hqq else Int4ChooseQParamsAlgorithm.TINYGEMM
    return PrototypeInt4WeightOnlyConfig(
        group_size=group_size, int4_choose_qparams_algorithm=algorithm, set_inductor_config=False
    )


def intx(bits: int, group: int | None, asymmetric: bool, hqq: bool = False) -> Any:
    from torchao.quantization import IntxWeightOnlyConfig, MappingType, PerAxis, PerGroup
    from torchao.quantization.quantize_.workflows import IntxChooseQParamsAlgorithm

    return IntxWeightOnlyConfig(
        weight_dtype=getattr(torch, f"int{bits}"),
        granularity=PerGroup(group) if group else PerAxis(0),
        mapping_type=MappingType.ASYMMETRIC if asymmetric else MappingType.SYMMETRIC,
        intx_choose_qparams_algorithm=(
            IntxChooseQParamsAlgorithm.HQQ_SCALE_ONLY if hqq else IntxChooseQParamsAlgorithm.AFFINE
        ),
    )


def int8() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig()


def quantized(*steps: tuple[Any, Callable[[torch.nn.Module, str], bool] | None],
              dtype: torch.dtype = torch.float32) -> Callable[[], Any]:  # fmt: skip
    """Load in `dtype`, then quantize_ with each (config, filter) in turn."""

    def build() -> Any:
        from torchao.quantization import quantize_

        model = load(dtype)
        for config, keep in steps:
            quantize_(model, config, filter_fn=keep)
        return model

    return build


def shared_embedding(linears: Any, dtype: torch.dtype = torch.float32) -> Callable[[], Any]:
    """Linears in the layers with `linears`; the tied embedding/lm_head as ONE int8 tensor
    (Intx, symmetric, blocks of 32 = the GGUF's Q8_0 grid), used by both embedding and linear."""

    def build() -> Any:
        from torchao.quantization import quantize_

        model = load(dtype)
        quantize_(model, linears, filter_fn=is_block_linear)
        embedding = model.get_input_embeddings()
        quantize_(embedding, intx(8, 32, asymmetric=False), filter_fn=lambda m, f: True)
        model.get_output_embeddings().weight = embedding.weight  # keep them tied
        return model

    return build


def bnb(kind: str, double: bool) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=kind, bnb_4bit_use_double_quant=double,
            bnb_4bit_compute_dtype=torch.float32,
        )  # fmt: skip
        return load(torch.float32, quantization_config=config, device_map={"": "cpu"})

    return build


def at_load(config: Any, dtype: torch.dtype, **options: Any) -> Callable[[], Any]:
    """transformers quantizes each weight as it is read (TorchAoConfig with a config object)."""

    def build() -> Any:
        from transformers import TorchAoConfig

        return load(dtype, quantization_config=TorchAoConfig(config, **options), device_map="cpu")

    return build


def embedding_fqn_config(linears: Any) -> Any:
    """For at-load: linears in the layers with `linears`, embed_tokens int8 in blocks of 32."""
    from torchao.quantization import FqnToConfig

    return FqnToConfig({
        "model.embed_tokens": intx(8, 32, asymmetric=False),
        r"re:model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj": linears,
    })  # fmt: skip


def variants() -> dict[str, Callable[[], Any]]:
    return {
        "fp32": lambda: load(torch.float32),
        "bf16": lambda: load(torch.bfloat16),
        "int8 (Int8WeightOnlyConfig, after load)": quantized((int8(), None)),
        "intx int4 sym g32 (baseline)": quantized((intx(4, 32, False), None)),
        "intx int4 asym g32": quantized((intx(4, 32, True), None)),
        "intx int4 asym g16": quantized((intx(4, 16, True), None)),
        "intx int4 asym g64": quantized((intx(4, 64, True), None)),
        "intx int4 sym g16": quantized((intx(4, 16, False), None)),
        "intx int4 hqq-scale-only g32": quantized((intx(4, 32, False, hqq=True), None)),
        "cpu int4 g32 (Int4Opaque, float zero)": quantized((int4_cpu(32), is_block_linear)),
        "cpu int4 g64": quantized((int4_cpu(64), is_block_linear)),
        "cpu int4 g128": quantized((int4_cpu(128), is_block_linear)),
        "cpu int4 g128 hqq": quantized((int4_cpu(128, hqq=True), is_block_linear)),
        "cpu int4 g32, bf16 activations": quantized(
            (int4_cpu(32), is_block_linear), dtype=torch.bfloat16
        ),
        "cpu int4 g32 + tied emb int8 g32": shared_embedding(int4_cpu(32)),
        "mixed: MLP intx4 asym g32, attn int8": quantized(
            (intx(4, 32, True), is_mlp), (int8(), is_attention)
        ),
        "bnb nf4 double-quant fp32": bnb("nf4", True),
        "bnb fp4 double-quant fp32": bnb("fp4", True),
        "at load: int8 (TorchAoConfig)": at_load(int8(), torch.float32),
        "at load: cpu int4 g32 fp32": at_load(int4_cpu(32), torch.float32),
        "at load: cpu int4 g32 bf16": at_load(int4_cpu(32), torch.bfloat16),
        "at load: cpu int4 g32 + emb int8 g32 fp32": at_load(
            embedding_fqn_config(int4_cpu(32)), torch.float32, include_input_output_embeddings=True
        ),
    }


def task1(only: set[str] | None) -> None:
    tok = tokenizer()
    ref = reference(tok)
    print("| method / config | agreement | logit cosine | weight bytes | tokens/s (64) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, build in variants().items():
        if only and not any(o in name for o in only):
            continue
        try:
            model = build()
            agree, cosine = agreement(model, ref)
            row = (f"| {name} | {agree:.3f} | {cosine:.4f} | {model_bytes(model) / 1e6:.1f} MB "
                   f"| {speed(model, tok):.1f} |")  # fmt: skip
            del model
        except Exception as exc:  # a failing method is a result too
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            row = f"| {name} | failed: {reason} | | | |"
        print(row, flush=True)


# --------------------------------------------------------------------------- task 2: memory


def loads() -> dict[str, Callable[[], Any]]:
    return {
        "fp32": lambda: load(torch.float32),
        "bf16": lambda: load(torch.bfloat16),
        "int8 now: fp32 load, then quantize_": quantized((int8(), None)),
        "int8 at load (TorchAoConfig), fp32": at_load(int8(), torch.float32),
        "int8 at load (TorchAoConfig), bf16": at_load(int8(), torch.bfloat16),
        "int4 now: fp32 load, then quantize_": quantized((int4_cpu(32), is_block_linear)),
        "int4 at load, fp32 (emb fp32)": at_load(int4_cpu(32), torch.float32),
        "int4 at load, bf16 (emb bf16)": at_load(int4_cpu(32), torch.bfloat16),
        "int4 at load + emb int8 g32, fp32": at_load(
            embedding_fqn_config(int4_cpu(32)), torch.float32, include_input_output_embeddings=True
        ),
    }


# (label, load, read the safetensors file with pread instead of mmap, fixed malloc threshold)
ROWS = [
    ("fp32", "fp32", False, False),
    ("bf16", "bf16", False, False),
    ("int8 now: fp32 load, then quantize_", "int8 now: fp32 load, then quantize_", False, False),
    ("int8 at load, fp32", "int8 at load (TorchAoConfig), fp32", False, False),
    ("int8 at load, bf16", "int8 at load (TorchAoConfig), bf16", False, False),
    ("int4 now: fp32 load, then quantize_", "int4 now: fp32 load, then quantize_", False, False),
    ("int4 at load, fp32 (emb fp32)", "int4 at load, fp32 (emb fp32)", False, False),
    ("int4 at load, bf16 (emb bf16)", "int4 at load, bf16 (emb bf16)", False, False),
    ("int4 + emb int8 at load, fp32", "int4 at load + emb int8 g32, fp32", False, False),
    ("fp32, pread + malloc fix", "fp32", True, True),
    ("bf16, pread + malloc fix", "bf16", True, True),
    ("int8 at load, fp32, pread + malloc fix", "int8 at load (TorchAoConfig), fp32", True, True),
    ("int8 at load, bf16, pread + malloc fix", "int8 at load (TorchAoConfig), bf16", True, True),
    ("int4 at load, fp32, pread + malloc fix", "int4 at load, fp32 (emb fp32)", True, True),
    ("int4 at load, bf16, pread + malloc fix", "int4 at load, bf16 (emb bf16)", True, True),
    (
        "int4 + emb int8 at load, fp32, pread + malloc fix",
        "int4 at load + emb int8 g32, fp32",
        True,
        True,
    ),
    ("int4 at load, bf16, malloc fix only", "int4 at load, bf16 (emb bf16)", False, True),
    ("int4 at load, bf16, pread only", "int4 at load, bf16 (emb bf16)", True, False),
]
MALLOC_FIX = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc: no dynamic mmap threshold


def read_with_pread() -> None:
    """Make transformers read the safetensors file with pread: each tensor is copied into
    private memory when it is needed, and the file's pages are never mapped into the process
    (with mmap every page of the file is touched, so all 538 MB count in RSS as RssFile)."""
    import transformers.modeling_utils as modeling

    opened = modeling.safe_open

    def safe_open(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("backend") == "mmap":
            kwargs["backend"] = "pread"
        return opened(*args, **kwargs)

    modeling.safe_open = safe_open


def child(name: str, pread: bool) -> None:
    """One load in this (fresh) process; prints one JSON line."""
    import torchao  # noqa: F401 - imports count before the load
    import transformers  # noqa: F401
    from torchao.prototype.quantization.int4 import inference_workflow  # noqa: F401

    if pread:
        read_with_pread()

    build = loads()[name]
    tok = tokenizer()
    encoded = tok(PROMPT, return_tensors="pt")
    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            now = status()
            for key, value in peaks.items():
                peaks[key] = max(value, now[key])
            time.sleep(0.002)

    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    before = status()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    model = build()
    seconds = time.perf_counter() - started
    with torch.inference_mode():
        model.generate(**encoded, max_new_tokens=8, do_sample=False)
    done.set()
    sampler.join()
    after = status()
    print(json.dumps({
        "name": name, "before": before["VmRSS"], "hwm": after["VmHWM"], "rss": after["VmRSS"],
        "anon_before": before["RssAnon"], "file_before": before["RssFile"],
        "anon_peak": peaks["RssAnon"], "file_peak": peaks["RssFile"],
        "anon_after": after["RssAnon"], "file_after": after["RssFile"],
        "weights": model_bytes(model), "seconds": seconds,
    }))  # fmt: skip


def task2(only: set[str] | None) -> None:
    rows = []
    for label, name, pread, malloc_fix in ROWS:
        if only and not any(o in label for o in only):
            continue
        env = {**os.environ, **(MALLOC_FIX if malloc_fix else {})}
        argv = [sys.executable, __file__, "_child", name] + (["--pread"] if pread else [])
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, cwd=ROOT, env=env)
        line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        if proc.returncode or not line:
            print(f"{label}: failed\n{proc.stderr[-2000:]}", flush=True)
            continue
        rows.append({**json.loads(line[-1]), "name": label})
        print(f"  measured {label}", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["name"] == "fp32"), None)
    mb = 1e6
    print(
        "| load | peak (HWM − before) | × fp32 | peak RssAnon Δ | peak RssFile Δ "
        "| RSS after Δ (anon / file) | weight bytes | load s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        peak = r["hwm"] - r["before"]
        ratio = f"{peak / (base['hwm'] - base['before']):.2f}" if base else "-"
        print(f"| {r['name']} | {peak / mb:.0f} MB | {ratio} "
              f"| {(r['anon_peak'] - r['anon_before']) / mb:.0f} MB "
              f"| {(r['file_peak'] - r['file_before']) / mb:.0f} MB "
              f"| {(r['rss'] - r['before']) / mb:.0f} MB "
              f"({(r['anon_after'] - r['anon_before']) / mb:.0f} / "
              f"{(r['file_after'] - r['file_before']) / mb:.0f}) "
              f"| {r['weights'] / mb:.0f} MB | {r['seconds']:.1f} |")  # fmt: skip


def main() -> None:
    torch.set_num_threads(THREADS)
    args = sys.argv[1:]
    if args[:1] == ["_child"]:
        child(args[1], "--pread" in args)
        return
    only = None
    if "--only" in args:
        only = set(args[args.index("--only") + 1].split(","))
    tasks = [a for a in args if a in ("task1", "task2")] or ["task1", "task2"]
    print(f"SmolLM2-135M-Instruct, torch {torch.__version__}, {THREADS} threads, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")  # fmt: skip
    if "task1" in tasks:
        print("\nTask 1: against fp32 (teacher-forced, 4 prompts × 48 tokens)\n")
        task1(only)
    if "task2" in tasks:
        print("\nTask 2: peak memory of loading, each in a fresh process "
              "(load + one 8-token generate)\n")  # fmt: skip
        task2(only)


if __name__ == "__main__":
    main()
