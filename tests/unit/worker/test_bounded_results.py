"""A result over LADDER_MAX_INLINE_RESULT_BYTES moves whole into the artifact result.json."""

from __future__ import annotations

import json

from shared.kinds import Outcome
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
