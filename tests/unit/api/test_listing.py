"""Listings show jobs in brief: a line about the result, never params or result."""

from __future__ import annotations

from flask.testing import FlaskClient

from shared import jobs
from shared.db import Database
from shared.kinds import get
from shared.models import JobStatus


def test_a_listing_carries_no_params_or_result_but_a_summary(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    made = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 10}}, headers=user)
    job_id = made.get_json()["id"]
    claim = jobs.claim(db, job_id, "w", 3)
    assert claim is not None
    result = {"value": "89", "digits": 2, "modulus": None}
    summary = get("stairs").outline(result)  # type: ignore[union-attr]
    assert jobs.finish(db, job_id, claim.attempt, JobStatus.SUCCEEDED, result=result,
                       summary=summary)  # fmt: skip
    failing = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 1}}, headers=user)
    failed_id = failing.get_json()["id"]
    claim = jobs.claim(db, failed_id, "w", 3)
    assert claim is not None
    jobs.finish(
        db, failed_id, claim.attempt, JobStatus.FAILED, error=jobs.error("boom", "it broke")
    )

    items = client.get("/api/v1/jobs", headers=user).get_json()["items"]
    assert [item["id"] for item in items] == [failed_id, job_id]
    for item in items:
        assert "params" not in item and "result" not in item
        assert item["url"] == f"/api/v1/jobs/{item['id']}"
    assert items[1]["summary"] == "89"
    assert items[0]["summary"] == "boom: it broke"
    whole = client.get(items[1]["url"], headers=user).get_json()
    assert whole["result"] == result and whole["summary"] == "89"


def test_kinds_say_their_results_in_a_line() -> None:
    stairs, attention, generate = (get(name) for name in ("stairs", "attention", "generate"))
    assert stairs and attention and generate
    huge = {"leading": "3542", "trailing": "0875", "digits": 209, "modulus": None}
    assert stairs.outline(huge) == "3542…0875 (209 digits)"
    assert stairs.outline({"value": "4", "modulus": 7}) == "4 mod 7"
    matrices = {"shape": {"n": 2, "m": 3, "d_k": 4, "d_v": 4}}
    assert attention.outline(matrices) == "2 × 3 queries × keys, d_k 4"
    text = {"model": "minilm", "tokens": [{}] * 9, "model_info": {"layers": 6, "heads": 12}}
    assert attention.outline(text) == "minilm: 9 tokens, 6 layers × 12 heads"
    long = generate.outline({"text": "Once upon\na time " * 40})
    assert len(long) == 200 and long.endswith("…") and "\n" not in long
