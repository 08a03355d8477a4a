"""A result over LADDER_MAX_INLINE_RESULT_BYTES moves whole into the artifact result.json."""

from __future__ import annotations

import json

from shared import jobs
from shared.db import Database
from shared.kinds import Outcome
from tests.support import add_job
from worker.results import bound


def test_a_small_result_stays_in_the_row() -> None:
    outcome = Outcome(result={"value": "89"}, artifacts={"a.txt": ("text/plain", b"x")})
    assert bound(outcome, 1_000) is outcome


def test_a_large_result_becomes_result_json_and_the_row_keeps_its_scalars() -> None:
    scores = [[0.5] * 256 for _ in range(256)]
    result = {"shape": {"n": 256}, "scale": "1/sqrt(d_k)", "digits": 3, "ok": True,
              "scores": scores, "long": "y" * 5_000, "artifact": "value.txt"}  # fmt: skip
    outcome = bound(Outcome(result=result, artifacts={"value.txt": ("text/plain", b"1")}), 4_096)
    content_type, data = outcome.artifacts["result.json"]
    assert content_type == "application/json"
    assert json.loads(data) == result  # the whole result, its own artifact name included
    assert outcome.artifacts["value.txt"] == ("text/plain", b"1")
    assert outcome.result == {
        "scale": "1/sqrt(d_k)",
        "digits": 3,
        "ok": True,
        "artifact": "result.json",
        "result_bytes": len(data),
    }
    assert len(json.dumps(outcome.result)) < 4_096


def test_a_job_cancelled_while_running_keeps_a_large_partial_result_whole(db: Database) -> None:
    job_id = add_job(db, kind="generate", params={"prompt": "hi"}, status="running")
    assert jobs.cancel(db, job_id)
    partial = bound(Outcome(result={"text": "x" * 10_000, "finish_reason": "cancelled"}), 1_000)
    assert jobs.keep_partial_result(db, job_id, partial.result, partial.artifacts)
    kept = jobs.find_artifact(db, job_id, "result.json")
    assert kept is not None and json.loads(kept.data)["text"] == "x" * 10_000
    assert jobs.find(db, job_id).result["artifact"] == "result.json"  # type: ignore[union-attr]
