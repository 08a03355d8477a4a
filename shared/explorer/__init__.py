"""The attention explorer: one page, built from an attention job's data, that draws every layer
and head. The same script and style serve the dashboard's job page and the job's artifact
`explorer.html`, a single file that works offline (its data, script and style all inline).

The data (`FORMAT`), made by worker/kinds/attention/explorer.py:

- `format`, `mode` ("text" or "matrices"), `title`, `notes` (sentences the page shows:
  a random-weight demo model, truncation, heads whose weights were not kept).
- `tokens` (text mode): `{"text", "special", "punctuation", "segment"}` per position; segment is
  0 for the first text and 1 for `text_pair`. Queries and keys are the same tokens.
  `shape` (matrices mode): `{"n", "m", "d_k", "d_v"}`; queries q0…q(n−1), keys k0…k(m−1).
- `layers`, `heads`: the model's; 1 and 1 in matrices mode.
- `stats`: `{"names": [...], "values": {name: [[per head] per layer]}, "labels": [[...]],
  "top": [[[{"index", "token", "weight"}]]]}`, the job result's numbers regrouped by statistic.
  Matrices mode: values hold `entropy` and `confidence` (means over the queries) for its one head,
  and `stats.rows` the entropy of each query.
- `weights`: `{"pairs": [[layer, head], ...], "queries", "keys", "dtype": "float16",
  "encoding": "zlib+base64", "layout": "byte-planes", "data"}`: the kept heads' weights, each a
  queries × keys matrix in row-major order, stacked in the order of `pairs`; the little-endian
  float16s are split into two planes (every low byte, then every high byte), which compresses
  a tenth smaller than the plain array, then zlib-compressed (what the browsers'
  DecompressionStream("deflate") reads) and base64-encoded.
- `kept`: `{"all": bool, "limit": tokens}`: whether every head's weights are here.
- `rollout` (text mode): tokens × tokens, as in the result; `focus`: `{"layer", "head", "why"}`,
  the head the page opens on; `matrices` (matrices mode): the result's `scaling` and
  `sdpa_max_abs_diff`.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib.resources import files
from typing import Any

FORMAT = "ladder-explorer/1"
ASSETS = files(__name__)
"""Where explorer.js and explorer.css live, for the dashboard to serve them."""

_DATA_START = '<script type="application/json" id="explorer-data">'
_DATA_END = "</script>"


def render(data: dict[str, Any]) -> str:
    """The whole page as one HTML file: style, script and data inline, nothing fetched."""
    page, style, script = _assets()
    parts = {
        "@@TITLE@@": _escape_html(str(data.get("title", "Attention explorer"))),
        "@@STYLE@@": style,
        "@@SCRIPT@@": script,
        "@@DATA@@": _DATA_START + _json_for_script(data) + _DATA_END,
    }
    # One pass, so that a marker inside a title or the data is never replaced itself.
    return re.sub("@@[A-Z]+@@", lambda match: parts[match.group()], page)


@cache
def _assets() -> tuple[str, str, str]:
    """The template, style and script, read once a process (a worker renders a page a job)."""
    page, style, script = (
        (ASSETS / name).read_text(encoding="utf-8")
        for name in ("page.html", "explorer.css", "explorer.js")
    )
    if "</script" in script.lower():
        raise ValueError("explorer.js must not hold '</script': it would end the inline element")
    return page, style, script


def embedded(page: str) -> dict[str, Any]:
    """The data a page made by `render` carries."""
    start = page.index(_DATA_START) + len(_DATA_START)
    data: dict[str, Any] = json.loads(page[start : page.index(_DATA_END, start)])
    return data


def _json_for_script(data: dict[str, Any]) -> str:
    # Inside <script> only "</" (and "<!--") could end or bend the element: escaping every "<"
    # keeps any token text a job holds from becoming markup; JSON.parse reads \u003c back.
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:  # rare, and a walk over every number costs a page 10 ms: only then
        text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _finite(value: Any) -> Any:
    """NaN and ±inf as null: JSON has no word for them (a model that overflowed can give them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _escape_html(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
