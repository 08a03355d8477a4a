"""The attention kind against the bare alternatives, in one process with the model cached.

Text mode: Ladder's runner on 128 tokens (forward with attentions and hidden states, every
statistic for 6 × 12 heads, rollout, norm-based shares, heatmap PNG, explorer page) against a
bare transformers forward with output_attentions=True on the same tokens. The explorer page's
share of that, against numpy's savez_compressed of the same float16 weights, and the time
Chromium takes to draw the page (where Debian's chromium and playwright are installed).
Matrices mode at 256 × 256 × 64: Ladder's float64 analysis (with its own SDPA cross-check)
against torch SDPA.
"""

from __future__ import annotations

import io
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, write_section
from shared.config import Settings
from shared.kinds import get
from shared.model_registry import resolve
from worker.kinds.attention import explorer
from worker.kinds.attention.matrices import analyse_matrices
from worker.kinds.attention.text import analyse_text
from worker.model_cache import load_encoder

SETTINGS = Settings()
KIND = get("attention")
TEXT = " ".join(["The quick brown fox jumps over the lazy dog, and then it rests."] * 12)


def interleaved(
    first: Callable[[], object], second: Callable[[], object], n: int
) -> tuple[float, float]:
    """Medians of n alternating runs, so that drift in the machine's speed hits both alike."""
    a, b = [], []
    for _ in range(n):
        started = time.perf_counter()
        first()
        a.append(time.perf_counter() - started)
        started = time.perf_counter()
        second()
        b.append(time.perf_counter() - started)
    return statistics.median(a), statistics.median(b)


def text_mode() -> tuple[float, float, int]:
    params = KIND.parse({"text": TEXT, "max_tokens": 128}, SETTINGS)  # type: ignore[union-attr]
    loaded = load_encoder(resolve("minilm", SETTINGS.models_dir))  # once, as a worker's cache
    tokenizer, model = loaded.tokenizer, loaded.model

    def bare() -> None:
        encoding = tokenizer(TEXT, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            model(**encoding, output_attentions=True)

    ours, theirs = interleaved(lambda: analyse_text(params.root, loaded, SETTINGS), bare, 30)
    tokens = len(tokenizer(TEXT, truncation=True, max_length=128)["input_ids"])
    return ours, theirs, tokens


def explorer_page() -> dict[str, float]:
    """The explorer step of a 128-token job: its time and size against savez_compressed."""
    params = KIND.parse({"text": TEXT, "max_tokens": 128}, SETTINGS)  # type: ignore[union-attr]
    loaded = load_encoder(resolve("minilm", SETTINGS.models_dir))
    outcome = analyse_text(params.root, loaded, SETTINGS)
    encoding = loaded.tokenizer(TEXT, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        output = loaded.model(**encoding, output_attentions=True)
    attentions = torch.stack(output.attentions)[:, 0].float().numpy()
    size = attentions.shape[-1]
    page = explorer.text_page(outcome.result, attentions, [0] * size, None, size)

    def npz() -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, attentions=attentions.astype(np.float16))
        return buffer.getvalue()

    ours, bare = interleaved(
        lambda: explorer.text_page(outcome.result, attentions, [0] * size, None, size), npz, 20
    )
    return {
        "page_s": ours, "npz_s": bare, "page_mb": len(page) / 1e6, "npz_mb": len(npz()) / 1e6,
        "raw_mb": attentions.size * 2 / 1e6, "draw_s": browser_draw(page),
    }  # fmt: skip


def browser_draw(page: bytes) -> float:
    """Seconds from navigation to the explorer's first drawing (data-ready), median of 5."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return float("nan")
    if chromium is None:
        return float("nan")
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as p:
        path = Path(folder) / "explorer.html"
        path.write_bytes(page)
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        times = []
        for _ in range(5):
            tab = browser.new_page()
            tab.goto(path.as_uri())
            tab.wait_for_selector("[data-explorer][data-ready=true]")
            times.append(tab.evaluate("performance.now()") / 1000)
            tab.close()
        browser.close()
    return statistics.median(times)


def matrices_mode() -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(256, 64)), rng.normal(size=(256, 64)), rng.normal(size=(256, 64))
    raw = {"q": q.tolist(), "k": k.tolist(), "v": v.tolist()}
    started = time.perf_counter()
    params = KIND.parse(raw, SETTINGS)  # type: ignore[union-attr]
    validate = time.perf_counter() - started
    tq, tk, tv = (torch.from_numpy(x)[None] for x in (q, k, v))

    def bare() -> None:
        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)

    ours, theirs = interleaved(lambda: analyse_matrices(params.root), bare, 20)
    return ours, theirs, validate


def main() -> None:
    ours, bare, tokens = text_mode()
    m_ours, m_bare, validate = matrices_mode()
    page = explorer_page()
    explorer_note = (
        "The text analysis includes the job's explorer page (every head's weights as float16, "
        f"its statistics and rollout): {page['page_s'] * 1000:.1f} ms and "
        f"{page['page_mb']:.2f} MB, where numpy's savez_compressed of the same float16 weights "
        f"alone takes {page['npz_s'] * 1000:.1f} ms for {page['npz_mb']:.2f} MB (raw: "
        f"{page['raw_mb']:.2f} MB). Chromium draws the page, from navigation to the model view "
        f"of 72 heads, in {page['draw_s'] * 1000:.0f} ms."
    )
    write_section(
        "Attention against bare transformers and SDPA",
        f"""
Medians of interleaved runs in one process, model cached, {torch.get_num_threads()} torch
threads, {machine()}, {time.strftime("%Y-%m-%d")}.

| job | Ladder | bare | Ladder / bare |
| --- | ---: | ---: | ---: |
| text, all-MiniLM-L6-v2, {tokens} tokens: full analysis vs forward with output_attentions \
| {ours * 1000:.1f} ms | {bare * 1000:.1f} ms | {ours / bare:.2f}× |
| matrices 256 × 256 × 64 (float64): analysis vs torch SDPA \
| {m_ours * 1000:.1f} ms | {m_bare * 1000:.2f} ms | {m_ours / m_bare:.0f}× |

{textwrap.fill(explorer_note, 95)}

It also adds hidden states, 72 heads' statistics, rollout, norm-based shares and a
PNG heatmap (Pillow; a matplotlib figure took 0.5 s alone). Matrices mode is dominated by
what it returns, not the product itself: three 256-row matrices as JSON lists, a second
softmax without scaling for the comparison, and the SDPA cross-check. Validating that body's
49,152 numbers in the API (pydantic, strict floats) took {validate * 1000:.0f} ms.
""",
    )


if __name__ == "__main__":
    main()
