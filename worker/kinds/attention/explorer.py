"""The data of an attention job's explorer page (the format is shared/explorer's), and the page.

The explorer draws the job's own numbers: the statistics are the result's, regrouped by
statistic; the weights are the model's, as float16, for every head or for the heads the runner
chose (text.py's `_explorer_page` decides which).
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np
import torch

from shared.explorer import FORMAT, render
from worker.kinds.attention.stats import Array

CONTENT_TYPE = "text/html"  # served with "; charset=utf-8"


def encode_weights(matrices: Array) -> str:
    """float16, split into byte planes (low bytes, then high), zlib-compressed, base64.

    A weight's high byte (sign and exponent) repeats across a matrix where its low byte looks
    random: apart, the planes compress to 0.79 of the raw float16s, interleaved to 0.88."""
    if matrices.dtype == np.float32:
        # torch rounds to float16 as numpy does (to nearest, ties to even), with the CPU's own
        # instructions: 1 ms for 72 heads of 126², where numpy's astype took 44. (Not from
        # float64, which it would round twice, through float32.)
        half = torch.from_numpy(np.ascontiguousarray(matrices)).half().numpy()
    else:
        half = matrices.astype(np.float16)
    halves = half.astype("<f2", copy=False).view(np.uint8).reshape(-1, 2)
    planes = np.concatenate([halves[:, 0], halves[:, 1]]).tobytes()
    # Huffman codes alone: as small as zlib's default (0.79 against 0.78 at level 6, MiniLM,
    # 126 tokens, 72 heads) in a quarter of the time (15 ms against 60), as string matching
    # finds little in these bytes. Any zlib reader takes it.
    packer = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_HUFFMAN_ONLY)
    return base64.b64encode(packer.compress(planes) + packer.flush()).decode("ascii")


def text_page(
    result: dict[str, Any],
    attentions: Array,
    segments: list[int],
    kept_pairs: list[tuple[int, int]] | None,
    limit: int,
) -> bytes:
    """explorer.html for a text job. `kept_pairs` None keeps every head's weights."""
    layers, heads, size, _ = attentions.shape
    every = [(layer, head) for layer in range(layers) for head in range(heads)]
    pairs = every if kept_pairs is None else kept_pairs
    names = [name for name in result["layers"][0]["heads"][0] if name not in _NOT_STATS]
    info = result["model_info"]
    notes = []
    if info["random_weights"]:
        notes.append(
            f"{info['display_name']} has random weights: a demo of the machinery, "
            "not a trained model's attention."
        )
    if result["truncated"]:
        notes.append(f"The text was cut to {size} tokens (max_tokens).")
    if kept_pairs is not None:
        why = (
            f"The text has {size} tokens, more than the {limit} the explorer keeps weights for "
            "in every head"
            if size > limit
            else "Every head's weights would make this page larger than an artifact may be"
        )
        heads_kept = f"{len(pairs)} chosen head{'s' if len(pairs) != 1 else ''}"
        notes.append(f"{why}: only {heads_kept} have weights here; every head has its statistics.")
    data = {
        "format": FORMAT,
        "mode": "text",
        "title": f"{result['model']}: {size} tokens, {layers} layers × {heads} heads",
        "notes": notes,
        "model": {key: info[key] for key in ("display_name", "layers", "heads", "random_weights")},
        "tokens": [
            {
                "text": token["text"],
                "special": token["special"],
                "punctuation": token["punctuation"],
                "segment": segment,
            }
            for token, segment in zip(result["tokens"], segments, strict=True)
        ],
        "layers": layers,
        "heads": heads,
        "stats": {
            "names": names,
            "values": {
                name: [[head[name] for head in layer["heads"]] for layer in result["layers"]]
                for name in names
            },
            "labels": [[head["type"] for head in layer["heads"]] for layer in result["layers"]],
            "top": [[head["top"] for head in layer["heads"]] for layer in result["layers"]],
        },
        "weights": _weights([attentions[layer, head] for layer, head in pairs], pairs),
        "kept": {"all": kept_pairs is None, "limit": limit},
        "rollout": result["rollout"],
        "rollout_residual": result["rollout_residual"],
        "focus": result["heatmap"],
    }
    return render(data).encode()


def matrices_page(result: dict[str, Any]) -> bytes:
    """explorer.html for a matrices job: its one head, from the result's float64 weights."""
    shape = result["shape"]
    entropy = result["entropy"]
    weights = np.array(result["weights"], dtype=np.float64)
    data = {
        "format": FORMAT,
        "mode": "matrices",
        "title": f"softmax(QKᵀ·scale)V: {shape['n']} queries × {shape['m']} keys",
        "notes": [],
        "shape": shape,
        "layers": 1,
        "heads": 1,
        "stats": {
            "names": ["entropy", "confidence"],
            "values": {
                "entropy": [[float(np.mean(entropy))]],
                "confidence": [[float(weights.max(axis=-1).mean())]],
            },
            "labels": [["matrices"]],
            "top": [[[]]],
            "rows": entropy,
        },
        "weights": _weights([weights], [(0, 0)]),
        "kept": {"all": True, "limit": max(shape["n"], shape["m"])},
        "focus": {"layer": 0, "head": 0, "why": "matrices mode has one head"},
        "matrices": {
            "scaling": result["scaling"],
            "sdpa_max_abs_diff": result["sdpa_max_abs_diff"],
        },
    }
    return render(data).encode()


_NOT_STATS = ("head", "type", "top")


def _weights(matrices: list[Array], pairs: list[tuple[int, int]]) -> dict[str, Any]:
    queries, keys = matrices[0].shape
    return {
        "pairs": [list(pair) for pair in pairs],
        "queries": queries,
        "keys": keys,
        "dtype": "float16",
        "encoding": "zlib+base64",
        "layout": "byte-planes",
        "data": encode_weights(np.stack(matrices)),
    }
