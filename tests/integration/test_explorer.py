"""A real attention job's explorer: what the worker stored, downloaded by its owner and opened
from a file with the network off, and drawn on the dashboard's job page."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from shared.explorer import embedded
from tests.browser import chromium, page_weights, shot
from tests.processes import Stack
from tests.support import explorer_weights

PAIR = {"text": "The cat sat on the mat.", "text_pair": "It was happy.", "return_matrices": True}
READY = "[data-ready=true]"
VIEWPORT = {"width": 1280, "height": 900}


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_jobs_explorer_on_the_dashboard_and_as_a_file(stack: Stack, tmp_path: Path) -> None:
    job = stack.client.wait(stack.client.submit(PAIR, kind="attention")["id"], timeout=180)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert "explorer.html" in result["artifacts"]
    download = stack.client.call("GET", f"/api/v1/jobs/{job['id']}/artifacts/explorer.html")
    assert download.status == 200
    assert download.headers["Content-Type"] == "text/html; charset=utf-8"
    assert download.headers["Content-Disposition"] == 'attachment; filename="explorer.html"'
    assert download.headers["Content-Security-Policy"].startswith("sandbox allow-scripts;")

    # The page's data is the job's own: the result's statistics, the .npz's float16 weights.
    data = embedded(download.body.decode())
    layer_stats = [[head for head in layer["heads"]] for layer in result["layers"]]
    for name in data["stats"]["names"]:
        assert data["stats"]["values"][name] == [[h[name] for h in heads] for heads in layer_stats]
    assert data["rollout"] == result["rollout"]
    npz = stack.client.call("GET", f"/api/v1/jobs/{job['id']}/artifacts/attentions.npz")
    with np.load(io.BytesIO(npz.body)) as stored:
        expected = stored["attentions"].reshape(72, 14, 14)
    np.testing.assert_array_equal(explorer_weights(data), expected)

    with chromium() as browser:
        # The downloaded file, opened from disk with the network off.
        path = tmp_path / "explorer.html"
        path.write_bytes(download.body)
        offline = browser.new_context(viewport=VIEWPORT)
        offline.set_offline(True)
        elsewhere: list[str] = []
        offline.on("request", lambda r: r.url.startswith("file://") or elsewhere.append(r.url))
        page = offline.new_page()
        page.goto(path.as_uri())
        page.wait_for_selector(f"[data-explorer]{READY}")
        assert page.locator(".cell").count() == 72
        shot(page, "explorer-minilm-model")
        page.click('.cell[data-layer="4"][data-head="7"]')
        assert page.locator("section.explorer-head").is_visible()
        weights = page_weights(page, [(4, 7)])[0]
        np.testing.assert_array_equal(np.array(weights).reshape(14, 14), expected[4 * 12 + 7])
        offline.close()

        # The dashboard's job page draws the same page, under its own CSP.
        context = browser.new_context(base_url=stack.base_url, viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(60_000)
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto("/admin/login")
        page.fill("input[name=token]", stack.client.token)
        page.click("button[type=submit]")
        page.goto(f"/admin/jobs/{job['id']}")
        page.wait_for_selector(f"#explorer{READY}")
        assert page.locator("#explorer .cell").count() == 72
        entropy = page.locator('.head-stats tr[data-stat="entropy"] .value')
        page.click('#explorer .cell[data-layer="2"][data-head="5"]')
        assert page.locator("#explorer section.explorer-head").is_visible()
        assert float(entropy.inner_text().split()[0]) == pytest.approx(
            result["layers"][2]["heads"][5]["entropy"], rel=1e-3
        )
        page.keyboard.press("ArrowRight")
        assert page.evaluate("location.hash") == "#view=head&layer=2&head=6"
        assert float(entropy.inner_text().split()[0]) == pytest.approx(
            result["layers"][2]["heads"][6]["entropy"], rel=1e-3
        )
        page.keyboard.press("ArrowDown")
        assert page.evaluate("location.hash") == "#view=head&layer=3&head=6"
        shot(page, "explorer-dashboard")
        # A reload keeps the view, layer and head.
        page.reload()
        page.wait_for_selector(f"#explorer{READY}")
        assert page.locator("#explorer section.explorer-head").is_visible()
        assert page.inner_text("#explorer .explorer-indicator").startswith("layer 3 · head 6")

        # explorer.html opened from the dashboard runs sandboxed: no cookie, no fetch of ours.
        page.goto(f"/admin/jobs/{job['id']}/artifacts/explorer.html")
        page.wait_for_selector(f"[data-explorer]{READY}")
        assert page.evaluate("window.origin") == "null"
        assert page.locator(".cell").count() == 72
        context.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(stack.base_url)] == []
    assert elsewhere == []
