"""Results too big for a row: stored whole as the artifact `result.json`, the row keeping an
outline, so that reading or listing jobs never drags megabytes out of the database."""

from __future__ import annotations

import json
from typing import Any

from shared.kinds import Outcome

ARTIFACT = "result.json"
KEPT_STRING_CHARS = 1_000
"""Longer strings stay only in the artifact."""


def bound(outcome: Outcome, limit: int) -> Outcome:
    """The outcome as it is when its result is at most `limit` bytes of JSON; else with the
    result moved to `result.json` and the row's result cut to its top-level scalars."""
    encoded = json.dumps(outcome.result, separators=(",", ":"), ensure_ascii=False).encode()
    if len(encoded) <= limit:
        return outcome
    kept: dict[str, Any] = {
        name: value
        for name, value in outcome.result.items()
        if isinstance(value, int | float | bool | None)
        or (isinstance(value, str) and len(value) <= KEPT_STRING_CHARS)
    }
    # Set after the scalars: a result naming an artifact of its own has it in result.json.
    kept.update(artifact=ARTIFACT, result_bytes=len(encoded))
    artifacts = {**outcome.artifacts, ARTIFACT: ("application/json", encoded)}
    return Outcome(result=kept, artifacts=artifacts)
