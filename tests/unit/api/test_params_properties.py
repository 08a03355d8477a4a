"""Property tests: whatever JSON a client sends as a job, the API answers 202, 400 or 422, never
a 5xx, and a refused job leaves nothing behind; valid stairs params always compute right."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Settings
from shared.db import Database
from shared.kinds import InvalidParams, get
from tests.support import job_count, oracle
from worker.kinds.stairs import ways

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = {
    "stairs": ["n", "steps", "modulus"],
    "attention": [
        "text",
        "text_pair",
        "model",
        "max_tokens",
        "layers",
        "heads",
        "top_k",
        "q",
        "k",
        "v",
        "mask",
        "scale",
    ],
    "generate": [
        "prompt",
        "messages",
        "model",
        "max_new_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "quantization",
    ],
}
PARAMS = st.sampled_from(sorted(KEYS)).flatmap(
    lambda kind: st.tuples(
        st.just(kind), st.dictionaries(st.sampled_from(KEYS[kind]), JSON, max_size=5)
    )
)
CHECKS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@CHECKS
@given(PARAMS)
def test_any_params_parse_or_are_refused_cleanly(case: tuple[str, dict[str, Any]]) -> None:
    kind, params = case
    try:
        get(kind).parse(params, Settings())  # type: ignore[union-attr]
    except InvalidParams as exc:
        assert exc.errors and all(e.field.startswith("params") for e in exc.errors)


@CHECKS
@given(PARAMS, st.sampled_from(["auto", "cpu", "gpu", "tpu"]), JSON)
def test_any_submission_is_202_400_or_422(
    client: FlaskClient,
    user: dict[str, str],
    db: Database,
    case: tuple[str, dict[str, Any]],
    device: str,
    priority: Any,
) -> None:
    kind, params = case
    before = job_count(db)
    body = {"kind": kind, "params": params, "device": device, "priority": priority}
    r = client.post("/api/v1/jobs", json=body, headers=user)
    assert r.status_code in {202, 400, 422}, r.get_json()
    if r.status_code != 202:
        assert r.mimetype == "application/problem+json" and r.get_json()["detail"]
        assert job_count(db) == before  # refused: nothing left behind


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 150),
    st.lists(st.integers(1, 12), min_size=1, max_size=5, unique=True),
    st.none() | st.integers(2, 10**12),
)
def test_valid_stairs_params_always_count_right(
    n: int, steps: list[int], modulus: int | None
) -> None:
    parsed = get("stairs").parse({"n": n, "steps": steps, "modulus": modulus}, Settings())  # type: ignore[union-attr]
    assert ways(parsed.n, parsed.steps, parsed.modulus) == oracle(n, sorted(steps), modulus)  # type: ignore[attr-defined]
