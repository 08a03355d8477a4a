"""The statistics of attention heads and rollout, on small cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.kinds.attention.stats import TokenFlags, head_stats, label, rollout, top_attended


def flags(size: int, special: tuple[int, ...] = (), punct: tuple[int, ...] = ()) -> TokenFlags:
    mask = np.zeros(size, bool)
    mask[list(special)] = True
    p = np.zeros(size, bool)
    p[list(punct)] = True
    return TokenFlags(
        special=mask, cls=mask & (np.arange(size) == 0), sep=mask & (np.arange(size) > 0), punct=p
    )


def stats_of(
    weights: np.ndarray, f: TokenFlags, queries: np.ndarray | None = None
) -> dict[str, float]:
    queries = np.ones(len(weights), bool) if queries is None else queries
    return {k: float(v) for k, v in head_stats(weights, f, queries).items()}


def test_uniform_attention() -> None:
    s = stats_of(np.full((4, 4), 0.25), flags(4))
    assert s["entropy"] == pytest.approx(math.log(4))
    assert s["confidence"] == pytest.approx(0.25)
    # Row i spreads 1/4 over |i − j|: rows 0 and 3 give 1.5, rows 1 and 2 give 1.
    assert s["distance"] == pytest.approx(1.25)
    assert s["self"] == pytest.approx(0.25)
    assert s["previous"] == pytest.approx(0.75 / 4)  # row 0 has no previous token
    assert label(s, 4) == "broad"


def test_identity_is_a_self_head() -> None:
    s = stats_of(np.eye(5), flags(5))
    assert s["entropy"] == pytest.approx(0.0) and s["confidence"] == 1.0 and s["distance"] == 0.0
    assert s["self"] == 1.0
    assert label(s, 5) == "self"


def test_previous_token_head() -> None:
    weights = np.zeros((4, 4))
    weights[0, 0] = 1.0
    for i in range(1, 4):
        weights[i, i - 1] = 1.0
    s = stats_of(weights, flags(4))
    assert s["previous"] == pytest.approx(0.75)
    assert s["distance"] == pytest.approx(0.75)
    assert label(s, 4) == "previous-token"


def test_special_shares_and_excluding_special_queries() -> None:
    # Token 0 is [CLS], token 3 is [SEP]; every row sends 0.6 to [CLS] and 0.2 to [SEP].
    weights = np.tile([0.6, 0.1, 0.1, 0.2], (4, 1))
    f = flags(4, special=(0, 3), punct=(2,))
    s = stats_of(weights, f)
    assert s["special_share"] == pytest.approx(0.8)
    assert s["cls_share"] == pytest.approx(0.6) and s["sep_share"] == pytest.approx(0.2)
    assert s["punct_share"] == pytest.approx(0.1)
    assert label(s, 4) == "special-token sink"
    only_words = stats_of(weights, f, queries=~f.special)
    assert only_words["self"] == pytest.approx((0.1 + 0.1) / 2)  # rows 1 and 2 only


def test_stats_for_every_head_at_once_match_one_by_one() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 6, 6))
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    f = flags(6, special=(0, 5), punct=(3,))
    queries = np.ones(6, bool)
    together = head_stats(weights, f, queries)
    for layer in range(3):
        for head in range(4):
            alone = head_stats(weights[layer, head], f, queries)
            for name, value in alone.items():
                assert together[name][layer, head] == pytest.approx(float(value))


def test_top_attended_averages_over_queries_and_skips_excluded_keys() -> None:
    weights = np.array([[0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.6, 0.3, 0.1]])
    index, weight = top_attended(weights, np.ones(3, bool), np.ones(3, bool), 2)
    assert index.tolist() == [0, 1] and weight.tolist() == pytest.approx([0.6, 0.2])
    index, weight = top_attended(weights, np.ones(3, bool), np.array([False, True, True]), 2)
    assert index.tolist() == [1, 2] and weight.tolist() == pytest.approx([0.2, 0.2])


def test_rollout_by_hand() -> None:
    # Everyone attends to token 0. With residual 0.5: Â = [[1, 0], [0.5, 0.5]].
    attention = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert rollout([attention]).tolist() == [[1.0, 0.0], [0.5, 0.5]]
    # Two such layers: Â·Â = [[1, 0], [0.75, 0.25]].
    assert rollout([attention, attention]) == pytest.approx(np.array([[1.0, 0.0], [0.75, 0.25]]))


def test_rollout_rows_stay_distributions() -> None:
    rng = np.random.default_rng(1)
    layers = [rng.dirichlet(np.ones(7), size=7) for _ in range(5)]
    result = rollout(layers)
    assert result.sum(-1) == pytest.approx(np.ones(7))
    assert (result >= 0).all()
