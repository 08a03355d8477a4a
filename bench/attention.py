"""The attention kind against the bare alternatives, in one process with the model cached.

Text mode: Ladder's runner on 128 tokens (forward with attentions and hidden states, every
statistic for 6 × 12 heads, rollout, norm-based shares, heatmap PNG) against a bare
transformers forward with output_attentions=True on the same tokens. Matrices mode at
256 × 256 × 64: Ladder's float64 analysis (with its own SDPA cross-check) against torch SDPA.
"""

from __future__ import annotations

import statistics
import sys
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

The text analysis adds hidden states, 72 heads' statistics, rollout, norm-based shares and a
PNG heatmap (Pillow; a matplotlib figure took 0.5 s alone). Matrices mode is dominated by
what it returns, not the product itself: three 256-row matrices as JSON lists, a second
softmax without scaling for the comparison, and the SDPA cross-check. Validating that body's
49,152 numbers in the API (pydantic, strict floats) took {validate * 1000:.0f} ms.
""",
    )


if __name__ == "__main__":
    main()
