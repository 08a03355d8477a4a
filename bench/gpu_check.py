"""One prepared check for a CUDA machine: fp16, int8 and int4 plans of a GLM-4-shaped model.

Builds a Glm4ForCausalLM of about 1 B parameters with random weights (hidden 2048, 8 layers,
GLM-4's 151,552-token vocabulary) from a config, saves it as a registry folder, then loads it
through Ladder's own planner and loader at each GPU precision and generates 64 tokens:
planned and peak CUDA memory, load time, tokens/s; then 8 jobs one after another against the
same 8 decoded together by the batching engine. Prints a Markdown table for
bench/RESULTS.md and writes it to $OUT/gpu_check.md when OUT is set.

    .venv/bin/python bench/gpu_check.py            # on a machine with a GPU
    .venv/bin/python bench/gpu_check.py --check    # a small model on the CPU: tries the script
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.config import Settings
from shared.kinds import get
from shared.model_registry import resolve
from tests.tiny_models import build_tiny_glm4
from worker.context import RunContext
from worker.kinds.generate import loading
from worker.kinds.generate.decode import generate

FULL = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=8, num_attention_heads=16,
            num_key_value_heads=4, head_dim=128, vocab_size=151_552)  # fmt: skip
SMALL = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=32, vocab_size=4096)  # fmt: skip


def build(folder: Path, shape: dict[str, int]) -> int:
    """A GLM-4-shaped model of random weights (the tokenizer is the tests' tiny one)."""
    from transformers import Glm4Config, Glm4ForCausalLM

    build_tiny_glm4(folder)  # tokenizer, template and ladder.json
    config = Glm4Config(**shape, max_position_embeddings=4096, pad_token_id=1, eos_token_id=None,
                        bos_token_id=None)  # fmt: skip
    torch.manual_seed(0)
    model = Glm4ForCausalLM(config).to(torch.float16)
    model.generation_config.eos_token_id = None
    model.save_pretrained(folder)
    meta = json.loads((folder / "ladder.json").read_text())
    meta["display_name"] = "GLM-4-shaped, ~1 B parameters (random weights, for benchmarks)"
    (folder / "ladder.json").write_text(json.dumps(meta))
    return sum(p.numel() for p in model.parameters())


class Quiet(RunContext):
    """A job's context with nobody following: tokens go nowhere, nobody cancels."""

    def publish(self, event: str, data: dict[str, Any]) -> str:
        return "0-0"

    def cancelled(self) -> bool:
        return False


def batching(generator: loading.Generator, folder: Path, jobs: int = 8) -> tuple[float, float]:
    """Tokens/s of `jobs` generations of 64 tokens one after another, then all together on the
    model's batching engine (as a generate worker's threads hand them over)."""
    settings = Settings(models_dir=folder.parent)
    kind = get("generate")
    assert kind is not None
    params: list[Any] = [
        kind.parse({"prompt": f"Stair {i}:", "model": folder.name, "max_new_tokens": 64}, settings)
        for i in range(jobs)
    ]

    def one(i: int) -> int:
        context = Quiet(f"b{i}", settings, None)  # type: ignore[arg-type]
        return int(generate(params[i], generator, context)["tokens"]["completion"])

    one(0)  # warm up
    started = time.perf_counter()
    alone = sum(one(i) for i in range(jobs)) / (time.perf_counter() - started)
    with ThreadPoolExecutor(jobs) as pool:
        started = time.perf_counter()
        together = sum(pool.map(one, range(jobs))) / (time.perf_counter() - started)
    return alone, together


def main() -> None:
    check = "--check" in sys.argv
    pool = "cpu" if check else "gpu"
    if not check and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --check to try the script on the CPU")
    precisions = ["fp32", "int8", "int4"] if check else ["fp16", "int8", "int4"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "glm4-1b"
        folder.mkdir()
        parameters = build(folder, SMALL if check else FULL)
        entry = resolve("glm4-1b", Path(tmp))
        speeds = (0.0, 1.0)
        for precision in precisions:
            generator = loading.load(entry, pool, precision, trust=False, batch=8)
            if precision == precisions[0]:
                speeds = batching(generator, folder)
            ids = torch.randint(0, 300, (1, 32), device=generator.model.device)
            with torch.inference_mode():
                generator.model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
                if pool == "gpu":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                out = generator.model.generate(
                    ids, max_new_tokens=64, min_new_tokens=64, do_sample=False
                )
                if pool == "gpu":
                    torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            planned, peak = generator.plan.estimated_bytes, loading.measured_bytes(generator)
            rows.append(
                f"| {precision} | {generator.plan.method} | {planned / 1e9:.2f} GB "
                f"| {peak / 1e9:.2f} GB | {generator.nbytes / 1e9:.2f} GB "
                f"| {generator.load_seconds:.1f} s | {(out.shape[1] - 32) / seconds:.1f} |"
            )
            del generator, out
            gc.collect()
            if pool == "gpu":
                torch.cuda.empty_cache()
    device = torch.cuda.get_device_name() if pool == "gpu" else "CPU (--check)"
    table = "\n".join([
        f"GLM-4-shaped model, {parameters / 1e9:.2f} B parameters, random weights; {device}; "
        f"torch {torch.__version__}; {time.strftime('%Y-%m-%d')}.",
        "",
        "| plan | method | planned | peak measured | weights | load | tokens/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Batching ({precisions[0]}, 8 jobs × 64 tokens): one after another "
        f"{speeds[0]:.1f} tokens/s, together {speeds[1]:.1f} ({speeds[1] / speeds[0]:.1f}×).",
    ])  # fmt: skip
    print(table)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
