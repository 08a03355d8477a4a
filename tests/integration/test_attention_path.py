"""`attention` jobs through the real worker: text mode with its heatmap, and matrices mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.processes import Stack


def test_text_job_succeeds_with_a_heatmap(stack: Stack) -> None:
    params = {
        "text": "The cat sat on the mat.",
        "text_pair": "It was happy.",
        "return_matrices": True,
        "layers": [0],
        "heads": [2],
    }
    job = stack.client.wait(stack.client.submit(params, kind="attention")["id"], timeout=180)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["model"] == "minilm" and len(result["layers"]) == 6
    assert result["artifacts"] == ["heatmap.png", "attentions.npz", "explorer.html"]
    assert np.array(result["matrices"][0]["weights"]).sum(-1) == pytest.approx(
        np.ones(14), abs=1e-5
    )
    png = stack.client.call("GET", f"/api/v1/jobs/{job['id']}/artifacts/heatmap.png")
    assert png.status == 200 and png.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(png.body))
    assert image.format == "PNG" and image.size[0] > 200
    npz = stack.client.call("GET", f"/api/v1/jobs/{job['id']}/artifacts/attentions.npz")
    with np.load(io.BytesIO(npz.body)) as arrays:
        assert arrays["attentions"].shape == (1, 1, 14, 14)


def test_matrices_job_matches_sdpa(stack: Stack) -> None:
    rng = np.random.default_rng(7)
    q, k, v = rng.normal(size=(5, 8)), rng.normal(size=(6, 8)), rng.normal(size=(6, 3))
    params = {"q": q.tolist(), "k": k.tolist(), "v": v.tolist(), "mask": "causal"}
    job = stack.client.wait(stack.client.submit(params, kind="attention")["id"], timeout=180)
    assert job["status"] == "succeeded", job
    assert job["result"]["sdpa_max_abs_diff"] <= 1e-6
    assert np.array(job["result"]["weights"]).shape == (5, 6)


def test_an_unknown_layer_fails_at_submit_not_in_the_worker(stack: Stack) -> None:
    reply = stack.client.call(
        "POST", "/api/v1/jobs", {"kind": "attention", "params": {"text": "hi", "layers": [6]}}
    )
    assert reply.status == 422
    assert reply.json()["errors"][0]["field"] == "params.layers"
