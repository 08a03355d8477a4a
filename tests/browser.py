"""A real headless Chromium for the tests that drive pages (the dashboard, the explorer): the
Debian package's, started so that it never phones home, and where screenshots go."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import need

SHOTS = Path(__file__).resolve().parents[1] / "var" / "screenshots"
"""Git-ignored; README.md shows one of them, copied to docs/."""
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these, Chromium phones home at start and this machine's closed network refuses it.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched browser (playwright's), or the test skipped where there is none (failed in CI)."""
    if not Path(CHROMIUM).exists():
        need("chromium", "Debian's chromium package (installed by .ci/run)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def page_weights(page: Any, pairs: list[tuple[int, int]], root: str = "[data-explorer]") -> Any:
    """The weights the explorer in `root` draws for each (layer, head): a list of floats each,
    or None where the page kept none."""
    script = """([root, pairs]) => {
      const app = LadderExplorer.of(document.querySelector(root));
      return pairs.map(([l, h]) => (app.weights(l, h) ? Array.from(app.weights(l, h)) : null));
    }"""
    return page.evaluate(script, [root, [list(pair) for pair in pairs]])
