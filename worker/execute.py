"""Run one attempt at a job: claim the row, call the kind's runner, record the outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from shared import jobs, kinds, producer, streams, workers
from shared.kinds import InvalidParams, Outcome
from shared.models import JobStatus, timestamp
from worker import leases, results
from worker.app import LadderCelery
from worker.context import RunContext
from worker.kinds import runner_for

log = logging.getLogger(__name__)
T = TypeVar("T")


def execute(
    app: LadderCelery,
    job_id: str,
    worker: str,
    time_limit: float | None,
    soft_time_limit: float | None = None,
) -> None:
    """Run the job once if it still needs running; a finished or cancelled job is a no-op,
    and so is a second copy of a job that someone is running now. The soft limit becomes the
    runner's deadline: a threads pool enforces no limits, so a long runner checks it."""
    lease = leases.take(app.redis, job_id, worker)
    if lease is None:
        return
    with lease:
        attempts = app.settings.max_attempts
        job = _persist(lambda: jobs.claim(app.db, job_id, worker, attempts))
        if job is None:
            if _persist(lambda: jobs.give_up(app.db, job_id, attempts)):
                streams.publish_status(app.redis, job_id, JobStatus.FAILED)
            log.info("job %s: nothing to run (finished, cancelled or out of attempts)", job_id)
            return
        started = {"attempts": job.attempt, "worker": worker, "progress": 0.0,
                   "started_at": timestamp(job.started_at)}  # fmt: skip
        streams.publish_status(app.redis, job_id, JobStatus.RUNNING, **started)
        deadline = time.monotonic() + soft_time_limit if soft_time_limit else None
        status = _attempt(app, job, job_id, worker, time_limit, deadline)
        _wrap_up(app, lease, job_id, worker, status)


def _wrap_up(app: LadderCelery, lease: leases.Lease, job_id: str, worker: str, status: str) -> None:
    """One round trip to Redis once the row is written: the final status for followers, the
    worker's tally, the lease given back."""
    pipe = app.redis.pipeline(transaction=False)
    if status != JobStatus.CANCELLED:  # the cancel published its own
        streams.add(pipe, job_id, "status", {"status": status})
    workers.count_ended(pipe, worker, status)
    try:
        lease.release(pipe)
        pipe.execute()
    except Exception:
        # Followers find the end in the row at their next look; the lease lapses by itself.
        log.warning("job %s: could not tell Redis how it ended", job_id, exc_info=True)


def _attempt(
    app: LadderCelery,
    job: jobs.Claim,
    job_id: str,
    worker: str,
    time_limit: float | None,
    deadline: float | None,
) -> str:
    settings, db = app.settings, app.db
    outcome: Outcome | None = None
    summary: str | None = None
    try:
        context = RunContext(
            job_id, settings, app.redis, job.queue, worker, deadline, db=db, attempt=job.attempt
        )
        outcome = _run(job.kind, job.params, context)
        kind = kinds.get(job.kind)
        summary = kind.outline(outcome.result) if kind else None
        outcome = results.bound(outcome, settings.max_inline_result_bytes)
        error = _too_big(outcome, settings.max_artifact_bytes)
    except InvalidParams as exc:
        error = jobs.error("invalid_params", str(exc))
    except SoftTimeLimitExceeded:
        limit = time_limit or producer.time_limit(settings, job.kind)
        error = jobs.error("timeout", f"the job ran past its time limit of {limit:g} s")
    except Exception as exc:
        log.exception("job %s failed", job_id)
        error = jobs.error("internal", f"{type(exc).__name__}: {exc}"[:1000])
    if error is not None or outcome is None:
        _persist(lambda: jobs.finish(db, job_id, job.attempt, JobStatus.FAILED, error=error,
                                     started_at=job.started_at))  # fmt: skip
        return JobStatus.FAILED
    done = _persist(
        lambda: jobs.finish(db, job_id, job.attempt, JobStatus.SUCCEEDED, result=outcome.result,
                            artifacts=outcome.artifacts, started_at=job.started_at,
                            summary=summary)
    )  # fmt: skip
    if not done:
        # Cancelled while it ran: keep what it made (a generation's text so far) on the row.
        kept = jobs.keep_partial_result(db, job_id, outcome.result, outcome.artifacts)
        log.info("job %s was cancelled while running (partial result kept: %s)", job_id, kept)
        return JobStatus.CANCELLED
    return JobStatus.SUCCEEDED


def _persist(write: Callable[[], T], seconds: float = 120) -> T:
    """Retry a write while the database is away (a restart, a failover), then give up: the
    reconciler sends the job again once the row is reachable and nobody holds the job."""
    deadline, pause = time.monotonic() + seconds, 0.5
    while True:
        try:
            return write()
        except OperationalError:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("database unavailable; retrying the write in %.1f s", pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _too_big(outcome: Outcome, limit: int) -> dict[str, str] | None:
    for name, (_, data) in outcome.artifacts.items():
        if len(data) > limit:
            return jobs.error("artifact_too_large", f"artifact {name} is over {limit} bytes")
    return None


def _run(kind_name: str, raw_params: dict[str, object], context: RunContext) -> Outcome:
    kind = kinds.get(kind_name)
    if kind is None:
        raise InvalidParams([kinds.FieldError("kind", f"{kind_name!r} is not enabled here")])
    params = kind.parse(raw_params, context.settings)
    return runner_for(kind_name)(params, context)
