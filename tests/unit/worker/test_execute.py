"""One attempt at a job, as a worker's task makes it: `execute` on SQLite and fakeredis, with
the kind's real runner or one put in its place, and no Celery worker."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from shared import jobs, workers
from shared.kinds import Outcome
from shared.kinds.stairs import StairsLimits
from shared.models import Job, JobStatus, utcnow
from tests.support import add_job
from worker import leases
from worker.app import LadderCelery
from worker.context import RunContext
from worker.execute import execute

WORKER = "cpu-1@host"
Run = Callable[[Any, RunContext], Outcome]


def row(app: LadderCelery, job_id: str) -> dict[str, Any]:
    """The job's row, every column, as a client's reads would find it."""
    found = jobs.find(app.db, job_id)
    assert found is not None
    return {column.name: getattr(found, column.name) for column in Job.__table__.columns}


def tallies(app: LadderCelery, worker: str = WORKER) -> dict[str, int]:
    """The worker's tally of ended jobs, as the registry shows it after its next heartbeat."""
    workers.beat(app.redis, worker, {"name": worker})
    (found,) = [w for w in workers.all_workers(app.redis) if w["name"] == worker]
    counts: dict[str, int] = found["counts"]
    return counts


def given_runner(monkeypatch: pytest.MonkeyPatch, run: Run) -> list[str]:
    """Make `run` every kind's runner; the ids of the jobs it is called for."""
    called: list[str] = []

    def runner(params: Any, context: RunContext) -> Outcome:
        called.append(context.job_id)
        return run(params, context)

    monkeypatch.setattr("worker.execute.runner_for", lambda kind: runner)
    return called


def never(params: Any, context: RunContext) -> Outcome:
    raise AssertionError("the runner must not be called")


def test_a_stairs_job_succeeds_with_its_value(app: LadderCelery) -> None:
    # Given a queued stairs job, n = 10
    job_id = add_job(app.db, params={"n": 10, "steps": [1, 2], "modulus": None})
    # When a worker runs it
    execute(app, job_id, WORKER, None)
    # Then it succeeded once, on that worker, with 89 ways
    job = row(app, job_id)
    assert job["status"] == JobStatus.SUCCEEDED and job["error"] is None
    assert job["result"]["value"] == "89" and job["result"]["algorithm"] == "fib"
    assert job["attempts"] == 1 and job["worker"] == WORKER and job["progress"] == 1.0
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert tallies(app) == {"succeeded": 1}
    assert leases.holder(app.redis, job_id) is None  # given back


def test_the_row_says_running_while_the_runner_runs(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    def run(params: Any, context: RunContext) -> Outcome:
        seen.append(row(app, context.job_id))
        return Outcome(result={"value": "21"})

    given_runner(monkeypatch, run)
    job_id = add_job(app.db)
    execute(app, job_id, WORKER, None)
    (during,) = seen
    assert during["status"] == JobStatus.RUNNING and during["attempts"] == 1
    assert during["worker"] == WORKER and during["started_at"] is not None
    assert during["finished_at"] is None
    assert leases.holder(app.redis, job_id) is None


def test_a_runner_that_raises_fails_the_job_as_internal(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(params: Any, context: RunContext) -> Outcome:
        raise RuntimeError("the abacus broke")

    given_runner(monkeypatch, run)
    job_id = add_job(app.db)
    execute(app, job_id, WORKER, None)
    job = row(app, job_id)
    assert job["status"] == JobStatus.FAILED and job["attempts"] == 1
    assert job["error"] == {"code": "internal", "message": "RuntimeError: the abacus broke"}
    assert job["result"] is None and job["finished_at"] is not None
    assert tallies(app) == {"failed": 1}


@pytest.mark.parametrize(
    ("time_limit", "named"),
    [(7.0, "7 s"), (None, "120 s")],  # the task's hard limit, else the kind's own
)
def test_a_runner_past_its_soft_time_limit_fails_as_timeout(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch, time_limit: float | None, named: str
) -> None:
    def run(params: Any, context: RunContext) -> Outcome:
        raise SoftTimeLimitExceeded()

    given_runner(monkeypatch, run)
    job_id = add_job(app.db)
    execute(app, job_id, WORKER, time_limit)
    job = row(app, job_id)
    assert job["status"] == JobStatus.FAILED and job["error"]["code"] == "timeout"
    assert job["error"]["message"].endswith(f"time limit of {named}")


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"n": 1000, "steps": [1, 2], "modulus": None}, "max_n_fib"),
        ({"n": 10, "steps": [1, 60], "modulus": None}, "max_step"),
        ({"n": -1}, "params.n"),
    ],
)
def test_params_this_worker_refuses_fail_as_invalid_params(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch, params: dict[str, Any], named: str
) -> None:
    # Given a worker whose limits are tighter than the API's that accepted the job
    app.settings = dataclasses.replace(app.settings, limits={"stairs": StairsLimits(max_n_fib=100)})
    called = given_runner(monkeypatch, never)
    job_id = add_job(app.db, params=params)
    execute(app, job_id, WORKER, None)
    job = row(app, job_id)
    assert job["status"] == JobStatus.FAILED and job["attempts"] == 1
    assert job["error"]["code"] == "invalid_params" and named in job["error"]["message"]
    assert called == []


def test_a_kind_this_worker_cannot_run_fails_as_invalid_params(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    called = given_runner(monkeypatch, never)
    job_id = add_job(app.db, kind="teleport", params={})
    execute(app, job_id, WORKER, None)
    job = row(app, job_id)
    assert job["status"] == JobStatus.FAILED
    assert job["error"]["code"] == "invalid_params" and "'teleport'" in job["error"]["message"]
    assert called == []


def test_an_artifact_over_the_limit_fails_the_job(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.settings = dataclasses.replace(app.settings, max_artifact_bytes=10)

    def run(params: Any, context: RunContext) -> Outcome:
        return Outcome(result={}, artifacts={"value.txt": ("text/plain", b"12345678901")})

    given_runner(monkeypatch, run)
    job_id = add_job(app.db)
    execute(app, job_id, WORKER, None)
    job = row(app, job_id)
    assert job["status"] == JobStatus.FAILED and job["result"] is None
    assert job["error"]["code"] == "artifact_too_large" and "value.txt" in job["error"]["message"]
    assert jobs.find_artifact(app.db, job_id, "value.txt") is None


def test_a_job_cancelled_while_it_runs_stays_cancelled_with_what_it_made(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a runner during which a client cancels the job
    def run(params: Any, context: RunContext) -> Outcome:
        assert jobs.cancel(app.db, context.job_id)
        return Outcome(result={"text": "so far", "finish_reason": "cancelled"})

    given_runner(monkeypatch, run)
    job_id = add_job(app.db)
    # When the runner returns
    execute(app, job_id, WORKER, None)
    # Then the cancel stands, and the partial result is kept on the row
    job = row(app, job_id)
    assert job["status"] == JobStatus.CANCELLED and job["error"]["code"] == "cancelled"
    assert job["result"] == {"text": "so far", "finish_reason": "cancelled"}
    assert job["attempts"] == 1
    assert tallies(app) == {"cancelled": 1}


def test_a_second_copy_of_a_job_someone_is_running_changes_nothing(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job another live worker process is running, its lease held
    job_id = add_job(app.db, status=JobStatus.RUNNING, attempts=1, worker="cpu-2@host",
                     started_at=utcnow())  # fmt: skip
    assert leases.take(app.redis, job_id, "cpu-2@host") is not None
    before = row(app, job_id)
    called = given_runner(monkeypatch, never)
    # When a second copy of its message reaches this worker
    execute(app, job_id, WORKER, None)
    # Then nothing runs and nothing changes: the row, its attempts, the lease
    assert called == []
    assert row(app, job_id) == before
    assert leases.holder(app.redis, job_id) == "cpu-2@host"


def test_a_second_copy_of_a_queued_job_while_the_first_is_claimed_changes_nothing(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a lease taken by another process, which has not claimed the row yet
    job_id = add_job(app.db)
    assert leases.take(app.redis, job_id, "cpu-2@host") is not None
    called = given_runner(monkeypatch, never)
    execute(app, job_id, WORKER, None)
    job = row(app, job_id)
    assert called == [] and job["status"] == JobStatus.QUEUED and job["attempts"] == 0


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_delivered_again_changes_nothing(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch, status: JobStatus
) -> None:
    ended = utcnow()
    job_id = add_job(app.db, status=status, attempts=1, worker="cpu-2@host",
                     result={"value": "21"}, started_at=ended - timedelta(seconds=1),
                     finished_at=ended)  # fmt: skip
    before = row(app, job_id)
    called = given_runner(monkeypatch, never)
    execute(app, job_id, WORKER, None)
    assert called == []
    assert row(app, job_id) == before
    assert leases.holder(app.redis, job_id) is None


def test_a_job_whose_worker_died_runs_again_as_its_next_attempt(app: LadderCelery) -> None:
    # Given a job left running by a worker that died (no lease), after one attempt
    job_id = add_job(app.db, status=JobStatus.RUNNING, attempts=1, worker="cpu-2@gone",
                     started_at=utcnow() - timedelta(minutes=5))  # fmt: skip
    execute(app, job_id, WORKER, None)
    job = row(app, job_id)
    assert job["status"] == JobStatus.SUCCEEDED and job["result"]["value"] == "21"
    assert job["attempts"] == 2 and job["worker"] == WORKER


def test_a_job_whose_workers_died_max_attempts_times_fails_as_worker_lost(
    app: LadderCelery, monkeypatch: pytest.MonkeyPatch
) -> None:
    spent = app.settings.max_attempts
    job_id = add_job(app.db, status=JobStatus.RUNNING, attempts=spent, worker="cpu-2@gone",
                     started_at=utcnow() - timedelta(minutes=5))  # fmt: skip
    called = given_runner(monkeypatch, never)
    execute(app, job_id, WORKER, None)
    job = row(app, job_id)
    assert called == []
    assert job["status"] == JobStatus.FAILED and job["attempts"] == spent
    assert job["error"]["code"] == "worker_lost" and f"{spent} times" in job["error"]["message"]
    assert job["finished_at"] is not None
