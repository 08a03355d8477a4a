"""softmax(QKᵀ·s)V on matrices a client sends, in float64, with what the scaling changed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from shared.kinds.attention import MatrixAttention
from worker.kinds.attention.stats import Array, row_entropy

EXPLANATION = (
    "Each row of Q is a query and each row of K a key, both d_k numbers long; QKᵀ holds the dot "
    "product of every query with every key, a raw score of how well they match. softmax turns "
    "each query's row of scores into weights that are positive and sum to 1, and multiplying by "
    "V mixes the value rows with those weights: each output row is a weighted average of the "
    "values. If the entries of q and k are independent with variance 1, a dot product of d_k "
    "terms has variance d_k, so scores grow with d_k; large scores push softmax into saturation, "
    "where one weight is near 1, the rest near 0, and the gradients vanish. Multiplying by "
    "1/√d_k brings the variance back to about 1 and keeps softmax in its useful range."
)


def allowed(spec: MatrixAttention, n: int, m: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which (query, key) pairs may attend: causal is top-left aligned, as SDPA's is_causal."""
    if spec.mask == "none":
        return np.ones((n, m), dtype=bool)
    if spec.mask == "causal":
        return np.tril(np.ones((n, m), dtype=bool))
    return np.array(spec.mask, dtype=bool)


def softmax(scores: Array, mask: np.ndarray[Any, np.dtype[np.bool_]]) -> Array:
    masked = np.where(mask, scores, -np.inf)
    shifted = np.exp(masked - masked.max(axis=-1, keepdims=True))
    result: Array = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


def analyse_matrices(spec: MatrixAttention) -> dict[str, Any]:
    q, k, v = (np.array(m, dtype=np.float64) for m in (spec.q, spec.k, spec.v))
    n, d_k = q.shape
    m = k.shape[0]
    mask = allowed(spec, n, m)
    if spec.scale == "sqrt_dk":
        scale, scale_name = 1 / math.sqrt(d_k), "1/sqrt(d_k)"
    elif spec.scale == "none":
        scale, scale_name = 1.0, "none"
    else:
        scale, scale_name = float(spec.scale), "given"
    raw = q @ k.T
    scores = raw * scale
    weights = softmax(scores, mask)
    output = weights @ v
    unscaled = softmax(raw, mask)
    by_sqrt_dk = softmax(raw / math.sqrt(d_k), mask)
    reference = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q)[None],
        torch.from_numpy(k)[None],
        torch.from_numpy(v)[None],
        attn_mask=torch.from_numpy(mask)[None],
        scale=scale,
    )[0].numpy()
    return {
        "shape": {"n": n, "m": m, "d_k": d_k, "d_v": v.shape[1]},
        # A blocked pair has no score (−∞ is not JSON): null.
        "scores": [
            [float(s) if ok else None for s, ok in zip(row, allowed_row, strict=True)]
            for row, allowed_row in zip(scores, mask, strict=True)
        ],
        "weights": weights.tolist(),
        "output": output.tolist(),
        "entropy": (row_entropy(weights) + 0.0).tolist(),  # + 0.0 turns −0.0 into 0.0
        "scaling": {
            "d_k": d_k,
            "scale": scale,
            "scale_used": scale_name,
            "score_variance_unscaled": float(raw[mask].var()),
            "score_variance_scaled": float(scores[mask].var()),
            "score_variance_sqrt_dk": float((raw[mask] / math.sqrt(d_k)).var()),
            "max_weight_unscaled": float(unscaled.max(axis=-1).mean()),
            "max_weight_sqrt_dk": float(by_sqrt_dk.max(axis=-1).mean()),
            "max_weight_used": float(weights.max(axis=-1).mean()),
            "entropy_unscaled": float(row_entropy(unscaled).mean()),
            "entropy_sqrt_dk": float(row_entropy(by_sqrt_dk).mean()),
        },
        "explanation": EXPLANATION,
        "sdpa_max_abs_diff": float(np.abs(reference - output).max()),
    }
