"""The attention explorer in a real headless Chromium: the standalone explorer.html opened from a
file with the network off. The data is synthetic, built here to the format in shared/explorer's
docstring, so no model, Redis or PostgreSQL is needed; test_explorer.py drives a real job's page
on the dashboard and as the downloaded file."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from shared.explorer import render
from tests.browser import chromium, page_weights, shot
from worker.kinds.attention.explorer import encode_weights

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

PAIR = [
    *("[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"),
    *("it", "was", "happy", ".", "[SEP]"),
]
SPECIAL = {"[CLS]", "[SEP]"}
HOSTILE = "<img src=x onerror=alert(1)>"
READY = "[data-explorer][data-ready=true]"


# ---- synthetic data, to the contract -------------------------------------------------------------


def softmax_rows(
    rng: np.random.Generator, shape: tuple[int, ...], sharp: float = 2.5
) -> np.ndarray:
    logits = rng.normal(size=shape) * sharp
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def head_stats(w: np.ndarray, special: np.ndarray) -> dict[str, np.ndarray]:
    """A few of the worker's statistics, each (layers, heads): enough to exercise the page."""
    n = w.shape[-1]
    index = np.arange(n)
    entr = -(w * np.log(np.where(w > 0, w, 1))).sum(-1)
    return {
        "entropy": entr.mean(-1),
        "confidence": w.max(-1).mean(-1),
        "distance": (w * np.abs(index[:, None] - index[None, :])).sum(-1).mean(-1),
        "special_share": w[..., special].sum(-1).mean(-1),
        "previous": np.concatenate(
            [np.zeros((*w.shape[:2], 1)), w[..., index[1:], index[:-1]]], -1
        ).mean(-1),
        "self": w[..., index, index].mean(-1),
    }


def label(stats: dict[str, float]) -> str:
    if stats["special_share"] >= 0.5:
        return "special-token sink"
    if stats["previous"] >= 0.5:
        return "previous-token"
    return "broad" if stats["confidence"] < 0.3 else "content"


def text_data(
    tokens: list[str] = PAIR,
    layers: int = 6,
    heads: int = 12,
    kept: list[tuple[int, int]] | None = None,
    notes: list[str] | None = None,
    seed: int = 7,
) -> tuple[dict[str, Any], np.ndarray]:
    """A text job's explorer data and its float16 weights (layers, heads, n, n).

    `kept` None keeps every head's weights; else only those pairs'."""
    rng = np.random.default_rng(seed)
    n = len(tokens)
    w = softmax_rows(rng, (layers, heads, n, n))
    # Some recognisable heads: a previous-token head, and [CLS] sinks in the last layer.
    previous = np.eye(n, k=-1)
    previous[0, 0] = 1
    w[1 % layers, 3 % heads] = 0.9 * previous + 0.1 / n
    w[-1, : heads // 3, :, 0] += 4.0
    w /= w.sum(-1, keepdims=True)
    w16 = w.astype(np.float16)
    special = np.array([t in SPECIAL for t in tokens])
    stats = head_stats(w16.astype(np.float64), special)
    names = list(stats)
    first_sep = tokens.index("[SEP]") if "[SEP]" in tokens else n - 1
    segments = [0 if i <= first_sep else 1 for i in range(n)]
    received = w16.astype(np.float64).mean(-2)
    top_index = np.argsort(-received, axis=-1, kind="stable")[..., :3]
    mixed = 0.5 * np.eye(n) + 0.5 * w.mean(1)
    rollout = np.eye(n)
    for layer in mixed / mixed.sum(-1, keepdims=True):
        rollout = layer @ rollout
    pairs = [(ly, h) for ly in range(layers) for h in range(heads)] if kept is None else kept
    focus = np.unravel_index(np.argmax(stats["confidence"]), (layers, heads))
    data = {
        "format": "ladder-explorer/1",
        "mode": "text",
        "title": f"synthetic: {n} tokens, {layers} layers × {heads} heads",
        "job_id": "00000000-0000-0000-0000-000000000000",
        "notes": notes or [],
        "model": {
            "display_name": "synthetic",
            "layers": layers,
            "heads": heads,
            "random_weights": False,
        },
        "tokens": [
            {"text": t, "special": t in SPECIAL, "punctuation": t in {".", ","}, "segment": s}
            for t, s in zip(tokens, segments, strict=True)
        ],
        "layers": layers,
        "heads": heads,
        "stats": {
            "names": names,
            "values": {k: np.round(v, 6).tolist() for k, v in stats.items()},
            "labels": [
                [label({k: float(v[ly, h]) for k, v in stats.items()}) for h in range(heads)]
                for ly in range(layers)
            ],
            "top": [
                [
                    [
                        {
                            "index": int(j),
                            "token": tokens[j],
                            "weight": round(float(received[ly, h, j]), 6),
                        }
                        for j in top_index[ly, h]
                    ]
                    for h in range(heads)
                ]
                for ly in range(layers)
            ],
        },
        "weights": {
            "pairs": [list(p) for p in pairs],
            "queries": n,
            "keys": n,
            "dtype": "float16",
            "encoding": "zlib+base64",
            "layout": "byte-planes",
            "data": encode_weights(np.stack([w16[ly, h] for ly, h in pairs])),
        },
        "kept": {"all": kept is None, "limit": 128},
        "rollout": np.round(rollout, 6).tolist(),
        "rollout_residual": 0.5,
        "focus": {"layer": int(focus[0]), "head": int(focus[1]), "why": "the most focused head"},
    }
    return data, w16


def matrices_data(n: int = 3, m: int = 4, d_k: int = 8) -> tuple[dict[str, Any], np.ndarray]:
    rng = np.random.default_rng(3)
    w = softmax_rows(rng, (n, m), sharp=1.5)
    entropy = -(w * np.log(w)).sum(-1)
    data = {
        "format": "ladder-explorer/1",
        "mode": "matrices",
        "title": f"softmax(QKᵀ·scale): {n} queries × {m} keys, d_k {d_k}",
        "notes": [],
        "shape": {"n": n, "m": m, "d_k": d_k, "d_v": 2},
        "layers": 1,
        "heads": 1,
        "stats": {
            "names": ["entropy", "confidence"],
            "values": {
                "entropy": [[float(entropy.mean())]],
                "confidence": [[float(w.max(-1).mean())]],
            },
            "labels": [["matrices"]],
            "top": [[[]]],
            "rows": entropy.tolist(),
        },
        "weights": {
            "pairs": [[0, 0]],
            "queries": n,
            "keys": m,
            "dtype": "float16",
            "encoding": "zlib+base64",
            "layout": "byte-planes",
            "data": encode_weights(w[None]),
        },
        "kept": {"all": True, "limit": m},
        "focus": {"layer": 0, "head": 0, "why": "matrices mode has one head"},
        "matrices": {
            "scaling": {
                "d_k": d_k,
                "scale": 1 / math.sqrt(d_k),
                "scale_used": "sqrt_dk",
                "score_variance_unscaled": 7.9,
                "score_variance_scaled": 0.98,
                "score_variance_sqrt_dk": 0.98,
                "max_weight_unscaled": 0.91,
                "max_weight_sqrt_dk": 0.52,
                "max_weight_used": 0.52,
                "entropy_unscaled": 0.31,
                "entropy_sqrt_dk": 1.02,
            },
            "sdpa_max_abs_diff": 2.2e-16,
        },
    }
    return data, w.astype(np.float16)


# ---- the browser ---------------------------------------------------------------------------------


@dataclass
class Opened:
    page: Page
    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def opener(browser: Browser, tmp_path: Path) -> Iterator[Callable[..., Opened]]:
    """Opens data's explorer.html from a file, offline; anything not file:// is refused and kept."""
    contexts = []

    def open_(data: dict[str, Any], name: str = "explorer.html") -> Opened:
        path = tmp_path / name
        path.write_text(render(data), encoding="utf-8")
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        context.set_offline(True)
        opened = Opened(context.new_page(), path.as_uri())

        def guard(route: Route) -> None:
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                opened.requests.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        watch(opened, lambda url: url.startswith("file://"))
        opened.page.goto(opened.url)
        opened.page.wait_for_selector(READY)
        return opened

    yield open_
    for context in contexts:
        context.close()


def watch(opened: Opened, allowed: Callable[[str], bool]) -> None:
    """Keep every request that `allowed` refuses, and every error the page logs (a CSP
    violation is logged as one)."""
    page = opened.page
    page.set_default_timeout(20_000)
    page.on("request", lambda r: None if allowed(r.url) else opened.requests.append(r.url))
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(str(e)))


def shown(value: float) -> float:
    """The number as the page shows it (4 significant digits)."""
    return float(f"{value:.4g}")


def where(page: Page) -> tuple[str, str]:
    return page.inner_text(".explorer-indicator"), page.evaluate("location.hash")


# ---- the standalone page -------------------------------------------------------------------------


def test_the_standalone_page_explores_every_head(opener: Callable[..., Opened]) -> None:
    data, w16 = text_data()
    layers, heads = data["layers"], data["heads"]
    opened = opener(data)
    p = opened.page
    focus = data["focus"]

    # Given the page, opened on the job's chosen head, in the Model view.
    assert p.locator(".explorer-tab").all_inner_texts() == ["Model", "Head", "Statistic", "Rollout"]
    assert p.locator(".explorer .cell").count() == layers * heads
    assert f"layer {focus['layer']} · head {focus['head']}" in where(p)[0]
    chosen = p.locator('.cell[aria-pressed="true"]')
    assert chosen.count() == 1 and chosen.get_attribute("data-layer") == str(focus["layer"])
    assert p.locator(".explorer-model .explorer-badge").first.inner_text() in {
        "sink",
        "prev",
        "broad",
        "content",
    }
    shot(p, "explorer-model")

    # When a cell is clicked: the Head view, that head, and its numbers beside it.
    p.click('.cell[data-layer="2"][data-head="5"]')
    assert p.locator("section.explorer-head").is_visible()
    assert p.locator(".head-stats").is_visible()
    assert where(p) == (
        f"layer 2 · head 5 · {data['stats']['labels'][2][5]}",
        "#view=head&layer=2&head=5",
    )
    for name in ("entropy", "confidence", "distance"):
        value = p.inner_text(f'.head-stats [data-stat="{name}"] .value')
        assert float(value) == shown(data["stats"]["values"][name][2][5])
    assert p.locator(".head-stats .explorer-top li").count() == 3
    # Lines are drawn; hovering a query token shades the keys it attends to.
    drawn = """() => {
      const c = document.querySelector(".explorer-lines");
      const pixels = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      return pixels.some((v, i) => i % 4 === 3 && v > 0);
    }"""
    assert p.evaluate(drawn)
    p.hover('.explorer-queries .tok[data-index="3"]')
    shaded = p.eval_on_selector_all(
        ".explorer-keys .tok", "ts => ts.filter(t => t.style.backgroundColor).length"
    )
    assert shaded > 0
    shot(p, "explorer-head")
    # The sentence filter: A → B dims the queries of sentence B and the keys of sentence A.
    p.select_option(".explorer-filter", "AB")
    segments = [t["segment"] for t in data["tokens"]]
    assert p.locator(".explorer-queries .tok.dim").count() == segments.count(1)
    assert p.locator(".explorer-keys .tok.dim").count() == segments.count(0)
    p.select_option(".explorer-filter", "all")

    # The keyboard moves between heads and layers, wrapping at the ends.
    p.locator(".explorer-title").click()
    p.keyboard.press("ArrowRight")
    assert where(p)[1] == "#view=head&layer=2&head=6"
    p.keyboard.press("ArrowDown")
    assert where(p)[0].startswith("layer 3 · head 6") and where(p)[1] == "#view=head&layer=3&head=6"
    p.keyboard.press("ArrowUp")
    assert where(p)[1] == "#view=head&layer=2&head=6"
    p.evaluate("LadderExplorer.of(document.querySelector('[data-explorer]')).select(2, 11)")
    p.keyboard.press("ArrowRight")
    assert where(p)[1] == "#view=head&layer=3&head=0"
    p.keyboard.press("ArrowLeft")
    assert where(p)[1] == "#view=head&layer=2&head=11"
    assert float(p.inner_text('.head-stats [data-stat="entropy"] .value')) == shown(
        data["stats"]["values"]["entropy"][2][11]
    )

    # A new hash is followed; a reload keeps view, layer and head.
    p.goto(opened.url + "#view=statistic&layer=1&head=3")
    assert p.locator("section.explorer-statistic").is_visible()
    assert where(p)[0].startswith("layer 1 · head 3")
    p.reload()
    p.wait_for_selector(READY)
    assert p.locator("section.explorer-statistic").is_visible()
    assert where(p) == (
        f"layer 1 · head 3 · {data['stats']['labels'][1][3]}",
        "#view=statistic&layer=1&head=3",
    )

    # The Statistic view: layers × heads cells and a legend of the statistic's range.
    assert p.locator(".explorer .stat-cell").count() == layers * heads
    entropy = np.array(data["stats"]["values"]["entropy"])
    assert float(p.inner_text(".explorer-statistic .explorer-legend-min")) == shown(entropy.min())
    assert float(p.inner_text(".explorer-statistic .explorer-legend-max")) == shown(entropy.max())
    assert (
        p.locator('.stat-cell[data-layer="1"][data-head="3"]').get_attribute("aria-pressed")
        == "true"
    )
    shot(p, "explorer-statistic")
    p.select_option(".explorer-stat-pick", "distance")
    assert "distance" in p.inner_text(".explorer-statistic .explorer-legend-caption")
    title = p.get_attribute('.stat-cell[data-layer="4"][data-head="7"]', "title") or ""
    assert f"distance {shown(data['stats']['values']['distance'][4][7]):g}" in title
    p.click('.stat-cell[data-layer="4"][data-head="7"]')
    assert where(p)[1] == "#view=statistic&layer=4&head=7"

    # The Rollout view: the matrix with its explanation, a value on hover.
    p.click('.explorer-tab[data-view="rollout"]')
    rollout = p.locator("section.explorer-rollout")
    assert rollout.is_visible() and "Abnar & Zuidema" in rollout.inner_text()
    assert "residual 0.5" in rollout.inner_text()
    assert p.locator(".explorer-rollout .explorer-row-labels span").count() == len(PAIR)
    box = p.locator(".explorer-heat-canvas").bounding_box()
    assert box is not None
    cell = box["width"] / len(PAIR)
    p.mouse.move(box["x"] + 2.5 * cell, box["y"] + 0.5 * cell)
    value = data["rollout"][0][2]
    assert p.inner_text(".explorer-readout") == f"[CLS] → cat: {shown(value):g}"
    shot(p, "explorer-rollout")

    # The page's weights are the job's float16s, bit for bit.
    pairs = [(layer, head) for layer in range(layers) for head in range(heads)]
    got = page_weights(p, pairs)
    np.testing.assert_array_equal(
        np.array(got, dtype=np.float64), w16.reshape(len(pairs), -1).astype(np.float64)
    )
    assert opened.requests == [] and opened.errors == []


def test_a_long_text_keeps_weights_for_some_heads(opener: Callable[..., Opened]) -> None:
    tokens = ["[CLS]"] + [f"w{i}" for i in range(198)] + ["[SEP]"]
    tokens[5] = HOSTILE
    kept = [(0, 1), (1, 2)]
    note = "The model has random weights: a demo of the machinery, not a trained model's attention."
    data, w16 = text_data(tokens, layers=2, heads=3, kept=kept, notes=[note])
    del data["rollout_residual"]
    opened = opener(data)
    p = opened.page

    assert p.locator(".explorer-notes li.warn").inner_text() == note
    assert "Weights are kept only for some heads (2 of 6)" in p.inner_text(
        ".explorer-model .explorer-kept"
    )
    assert p.locator(".explorer .cell").count() == 6
    assert p.locator(".explorer .cell .explorer-noweights").count() == 4
    assert page_weights(p, [(0, 0)]) == [None]
    got = page_weights(p, kept)
    np.testing.assert_array_equal(
        np.array(got, dtype=np.float64), np.stack([w16[ly, h].ravel() for ly, h in kept])
    )
    # A head without weights: the Head view says so, its statistics are still there.
    p.click('.cell[data-layer="1"][data-head="0"]')
    assert "No weights for layer 1 · head 0" in p.inner_text("section.explorer-head")
    assert float(p.inner_text('.head-stats [data-stat="entropy"] .value')) == shown(
        data["stats"]["values"]["entropy"][1][0]
    )
    # Token texts are text: the hostile one shows as itself and makes no element.
    assert p.locator(".explorer-queries .tok").nth(5).text_content() == HOSTILE
    assert p.locator(".explorer img").count() == 0
    # No segment 1 here: no sentence filter.
    assert p.locator(".explorer-filter").count() == 0
    # A rollout whose residual the data does not give.
    p.click('.explorer-tab[data-view="rollout"]')
    assert "(Abnar & Zuidema, 2020), with the residual stream: " in p.inner_text(
        ".explorer-rollout"
    )
    assert opened.requests == [] and opened.errors == []


def test_a_matrices_page_has_one_head(opener: Callable[..., Opened]) -> None:
    data, w16 = matrices_data()
    opened = opener(data)
    p = opened.page

    assert p.locator(".explorer-tab").all_inner_texts() == ["Head", "Matrix"]
    assert where(p) == ("layer 0 · head 0 · matrices", "#view=head&layer=0&head=0")
    assert p.locator(".explorer-queries .tok").all_inner_texts() == ["q0", "q1", "q2"]
    assert p.locator(".explorer-keys .tok").all_inner_texts() == ["k0", "k1", "k2", "k3"]
    assert p.inner_text('.head-stats [data-stat="d_k"] .value') == "8"
    assert p.inner_text('.head-stats [data-stat="scale used"] .value') == "sqrt_dk"
    rows = p.locator(".head-stats .explorer-rows .value").all_inner_texts()
    assert [float(v) for v in rows] == [shown(v) for v in data["stats"]["rows"]]
    p.keyboard.press("ArrowRight")
    assert where(p)[1] == "#view=head&layer=0&head=0"
    p.click('.explorer-tab[data-view="matrix"]')
    assert p.locator("section.explorer-matrix .explorer-heat-canvas").is_visible()
    assert p.locator(".explorer-matrix .explorer-col-labels span").all_inner_texts() == [
        "k0",
        "k1",
        "k2",
        "k3",
    ]
    shot(p, "explorer-matrix")
    np.testing.assert_array_equal(
        np.array(page_weights(p, [(0, 0)])[0]), w16.ravel().astype(np.float64)
    )
    assert opened.requests == [] and opened.errors == []
