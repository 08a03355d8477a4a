"""The response models in api.schemas describe exactly what the routes build."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from flask import Flask

from api import schemas
from api.problems import Problem, invalid, problem_response
from api.representation import job_json
from shared.kinds import FieldError
from shared.models import Job, JobStatus


def a_job(**fields: object) -> Job:
    """A job row as the database would hand it back (SQLite's datetimes come naive)."""
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "kind": "stairs",
        "status": JobStatus.QUEUED,
        "params": {"n": 3, "steps": [1, 2]},
        "result": None,
        "error": None,
        "priority": 5,
        "device": "auto",
        "queue": "cpu",
        "attempts": 0,
        "worker": None,
        "progress": 0.0,
        "created_at": datetime(2025, 1, 2, 3, 4, 5),
        "started_at": None,
        "finished_at": None,
    }
    return Job(**{**values, **fields})


def test_job_json_has_exactly_the_models_fields() -> None:
    assert list(job_json(a_job())) == list(schemas.Job.model_fields)


@pytest.mark.parametrize(
    "job",
    [
        a_job(),
        a_job(
            status=JobStatus.SUCCEEDED,
            result={"value": "3", "artifact": "value.txt"},
            attempts=1,
            worker="cpu@host",
            progress=1.0,
            started_at=datetime(2025, 1, 2, 3, 4, 6, tzinfo=UTC),
            finished_at=datetime(2025, 1, 2, 3, 4, 7, tzinfo=UTC),
        ),
        a_job(status=JobStatus.FAILED, error={"code": "timeout", "message": "too slow"}),
    ],
)
def test_job_json_fits_the_model_over_the_wire(job: Job) -> None:
    body = json.dumps(job_json(job))
    schemas.Job.model_validate_json(body, strict=False)


@pytest.mark.parametrize(
    "problem",
    [Problem(404, "no job x"), invalid([FieldError("params.n", "must be at least 0")])],
)
def test_problem_responses_fit_the_model(app: Flask, problem: Problem) -> None:
    with app.test_request_context("/api/v1/jobs"):
        body = problem_response(problem).get_data(as_text=True)
    fields = set(json.loads(body))
    assert fields <= set(schemas.Problem.model_fields)
    schemas.Problem.model_validate_json(body)
