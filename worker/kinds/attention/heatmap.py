"""A heatmap of one head's attention as a PNG, labelled with its tokens, drawn with Pillow.

Pillow rather than matplotlib: a matplotlib figure with a hundred tick labels takes half a
second, ten times the forward pass it illustrates; this takes a few milliseconds. The image
is a palette image (one byte a pixel): viridis in 254 levels, then white and black for text.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from worker.kinds.attention.stats import Array

PLOT_PIXELS = 768
LABEL_PIXELS = 13
FONT_SIZE = 11
LEVELS = 254
WHITE, BLACK = 254, 255
# Viridis at ten evenly spaced stops: perceptually uniform and readable in grey.
VIRIDIS = [
    "#440154", "#482878", "#3e4989", "#31688e", "#26828e",
    "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725",
]  # fmt: skip


@cache
def _palette() -> list[int]:
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in VIRIDIS], float)
    at = np.linspace(0, len(stops) - 1, LEVELS)
    low = np.floor(at).astype(int)
    high = np.minimum(low + 1, len(stops) - 1)
    mix = (at - low)[:, None]
    colours = ((1 - mix) * stops[low] + mix * stops[high]).round().astype(int)
    return [*colours.ravel().tolist(), 255, 255, 255, 0, 0, 0]


@cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=FONT_SIZE)


def _canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("P", (width, height), WHITE)
    image.putpalette(_palette())
    return image, ImageDraw.Draw(image)


def render(weights: Array, tokens: list[str], title: str) -> bytes:
    """A PNG, tens of KB. Rows are queries, columns keys; past ~60 tokens every k-th label."""
    size = len(tokens)
    cell = max(1, min(28, PLOT_PIXELS // size))
    step = -(-LABEL_PIXELS // cell)  # ceil: labels never overlap
    labels = [(i, tokens[i][:14]) for i in range(0, size, step)]
    _, scratch = _canvas(1, 1)
    label_width = 8 + max(
        int(scratch.textbbox((0, 0), text, font=_font())[2]) for _, text in labels
    )
    plot = size * cell
    left, top = label_width, 28
    image, draw = _canvas(left + plot + 70, top + plot + label_width)

    peak = float(weights.max()) or 1.0
    levels = np.clip(weights / peak * (LEVELS - 1), 0, LEVELS - 1).astype(np.uint8)
    image.paste(Image.fromarray(levels.repeat(cell, axis=0).repeat(cell, axis=1), "L"), (left, top))
    draw.text((left, 6), title, fill=BLACK, font=_font())
    # One strip of labels serves both axes: as is for the rows, turned a quarter for the columns.
    strip, strip_draw = _canvas(label_width, plot)
    for i, text in labels:
        strip_draw.text((label_width - 4, i * cell + cell // 2), text, fill=BLACK, font=_font(),
                        anchor="rm")  # fmt: skip
    image.paste(strip, (0, top))
    image.paste(strip.rotate(90, expand=True), (left, top + plot + 2))
    bar = np.linspace(LEVELS - 1, 0, plot).astype(np.uint8)[:, None].repeat(14, axis=1)
    image.paste(Image.fromarray(bar, "L"), (left + plot + 10, top))
    draw.text((left + plot + 28, top), f"{peak:.2f}", fill=BLACK, font=_font(), anchor="lt")
    draw.text((left + plot + 28, top + plot), "0", fill=BLACK, font=_font(), anchor="lb")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast; a palette image stays small
    return buffer.getvalue()
