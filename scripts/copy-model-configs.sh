#!/usr/bin/env bash
# What the API reads of a model registry, copied from SRC to DST: each model folder's
# config.json and ladder.json, and its GGUF file whole (the API reads the header and checks it
# against the file's size); no safetensors weights, no tokenizer. The API checks a job against
# the models (shared/model_registry.py) and loads none, so the API image gets the worker
# image's models this way.
#
#   scripts/copy-model-configs.sh SRC DST
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 SRC DST" >&2
  exit 2
fi
src=$1
dst=$2

mkdir -p "$dst"
shopt -s nullglob
for folder in "$src"/*/; do
  name=$(basename "$folder")
  for file in "$folder"config.json "$folder"ladder.json "$folder"*.gguf; do
    if [[ -f $file ]]; then
      mkdir -p "$dst/$name"
      cp "$file" "$dst/$name/"
    fi
  done
done
chmod -R a+rX "$dst"
