"""Matrices mode against torch's scaled_dot_product_attention, and what scaling does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.config import Settings
from shared.kinds import get
from shared.kinds.attention import MatrixAttention
from worker.kinds.attention.matrices import analyse_matrices


def spec(**params: object) -> MatrixAttention:
    parsed = get("attention").parse(params, Settings())  # type: ignore[union-attr]
    assert isinstance(parsed.root, MatrixAttention)  # type: ignore[attr-defined]
    return parsed.root  # type: ignore[attr-defined, no-any-return]


def sdpa(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, scale: float | None
) -> np.ndarray:
    t = [torch.tensor(x, dtype=torch.float64) for x in (q, k, v)]
    attn_mask = None if mask is None else torch.tensor(mask)
    return torch.nn.functional.scaled_dot_product_attention(
        *t, attn_mask=attn_mask, scale=scale
    ).numpy()


@pytest.mark.parametrize(
    ("n", "m", "d", "dv"), [(1, 1, 1, 1), (3, 5, 4, 2), (16, 16, 64, 32), (7, 2, 8, 9)]
)
def test_equals_sdpa(n: int, m: int, d: int, dv: int) -> None:
    rng = np.random.default_rng(n * 100 + m)
    q, k, v = rng.normal(size=(n, d)), rng.normal(size=(m, d)), rng.normal(size=(m, dv))
    result = analyse_matrices(spec(q=q.tolist(), k=k.tolist(), v=v.tolist()))
    assert np.abs(np.array(result["output"]) - sdpa(q, k, v, None, None)).max() <= 1e-6
    weights = np.array(result["weights"])
    assert weights.sum(-1) == pytest.approx(np.ones(n))
    assert result["sdpa_max_abs_diff"] <= 1e-6
    assert result["shape"] == {"n": n, "m": m, "d_k": d, "d_v": dv}


def test_causal_mask() -> None:
    rng = np.random.default_rng(3)
    q, k, v = rng.normal(size=(4, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    result = analyse_matrices(spec(q=q.tolist(), k=k.tolist(), v=v.tolist(), mask="causal"))
    expected = sdpa(q, k, v, np.tril(np.ones((4, 6), bool)), None)
    assert np.abs(np.array(result["output"]) - expected).max() <= 1e-6
    weights = np.array(result["weights"])
    assert weights[0, 1:].sum() == 0.0 and weights[0, 0] == 1.0
    assert result["scores"][0][1] is None and result["scores"][0][0] is not None


def test_boolean_mask_and_explicit_scales() -> None:
    rng = np.random.default_rng(4)
    q, k, v = rng.normal(size=(3, 5)), rng.normal(size=(4, 5)), rng.normal(size=(4, 3))
    mask = [[True, False, True, False], [False, True, False, False], [True, True, True, True]]
    for scale, factor in (("none", 1.0), (0.25, 0.25), ("sqrt_dk", 1 / math.sqrt(5))):
        result = analyse_matrices(
            spec(q=q.tolist(), k=k.tolist(), v=v.tolist(), mask=mask, scale=scale)
        )
        expected = sdpa(q, k, v, np.array(mask), factor)
        assert np.abs(np.array(result["output"]) - expected).max() <= 1e-6
        assert result["scaling"]["scale"] == pytest.approx(factor)
        assert np.array(result["weights"])[1].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_a_case_by_hand() -> None:
    # One query [1, 0] against keys [1, 0] and [0, 1]: scores 1/√2 and 0.
    result = analyse_matrices(spec(q=[[1, 0]], k=[[1, 0], [0, 1]], v=[[10], [20]]))
    first = 1 / (1 + math.exp(-1 / math.sqrt(2)))
    assert result["scores"] == [[pytest.approx(1 / math.sqrt(2)), 0.0]]
    assert result["weights"][0] == pytest.approx([first, 1 - first])
    assert result["output"][0][0] == pytest.approx(10 * first + 20 * (1 - first))
    entropy = -(first * math.log(first) + (1 - first) * math.log(1 - first))
    assert result["entropy"] == [pytest.approx(entropy)]


def test_scaling_keeps_score_variance_near_one_and_softmax_out_of_saturation() -> None:
    rng = np.random.default_rng(5)
    d = 256
    q, k, v = rng.normal(size=(64, d)), rng.normal(size=(64, d)), rng.normal(size=(64, 4))
    scaling = analyse_matrices(spec(q=q.tolist(), k=k.tolist(), v=v.tolist()))["scaling"]
    assert scaling["score_variance_unscaled"] == pytest.approx(d, rel=0.15)
    assert scaling["score_variance_scaled"] == pytest.approx(1.0, rel=0.15)
    assert scaling["max_weight_unscaled"] > 0.8  # saturated: rows close to one-hot
    assert scaling["max_weight_sqrt_dk"] < 0.5
    assert scaling["entropy_sqrt_dk"] > scaling["entropy_unscaled"]


def test_the_explanation_names_the_ideas() -> None:
    text = analyse_matrices(spec(q=[[1.0]], k=[[1.0]], v=[[1.0]]))["explanation"]
    for idea in ("d_k", "√d_k", "QKᵀ", "softmax", "variance", "saturation", "V"):
        assert idea in text
