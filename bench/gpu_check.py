"""One prepared check for a CUDA machine: fp16, int8 and int4 plans of a GLM-4-shaped model.

Builds a Glm4ForCausalLM of about 1 B parameters with random weights (hidden 2048, 8 layers,
GLM-4's 151,552-token vocabulary) from a config, saves it as a registry folder, then loads it
through Ladder's own planner and loader at each GPU precision and generates 64 tokens:
planned and peak CUDA memory, load time, tokens/s. Prints a Markdown table for
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
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.model_registry import resolve
from tests.tiny_models import build_tiny_glm4
from worker.kinds.generate import loading

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
        for precision in precisions:
            generator = loading.load(entry, pool, precision, trust=False)
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
    ])  # fmt: skip
    print(table)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
