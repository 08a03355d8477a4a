"""A result too big for a row, through the real worker: the row keeps an outline and the whole
result is the artifact result.json; listings stay small whatever the results."""

from __future__ import annotations

import json

import numpy as np

from tests.processes import Stack


def test_a_large_result_is_stored_as_result_json(stack: Stack) -> None:
    # The case: a 17 KB request whose weights (256 × 256) are over a megabyte of JSON.
    rng = np.random.default_rng(3)
    q, k, v = (rng.normal(size=(256, 1)).round(3).tolist() for _ in range(3))
    made = stack.client.submit({"q": q, "k": k, "v": v}, kind="attention")
    job = stack.client.wait(made["id"], timeout=180)
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["artifact"] == "result.json"
    assert result["artifact_url"] == f"/api/v1/jobs/{job['id']}/artifacts/result.json"
    assert result["result_bytes"] > stack.settings.max_inline_result_bytes
    assert "weights" not in result and len(json.dumps(result)) < 4_096
    assert job["summary"] == "256 × 256 queries × keys, d_k 1"
    reply = stack.client.call("GET", result["artifact_url"])
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    whole = reply.json()
    assert len(reply.body) == result["result_bytes"]
    weights = np.array(whole["weights"])
    assert weights.shape == (256, 256) and np.allclose(weights.sum(-1), 1, atol=1e-5)
    assert whole["sdpa_max_abs_diff"] == result["sdpa_max_abs_diff"]

    listed = stack.client.call("GET", "/api/v1/jobs?kind=attention&limit=100").json()["items"]
    mine = next(item for item in listed if item["id"] == job["id"])
    assert mine["summary"] == job["summary"] and "result" not in mine and "params" not in mine


def test_a_small_result_stays_inline_with_its_summary(stack: Stack) -> None:
    job = stack.client.wait(stack.client.submit({"n": 10})["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["value"] == "89" and "artifact" not in job["result"]
    assert job["summary"] == "89"
