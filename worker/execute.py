"""Run one attempt at a job: claim the row, call the kind's runner, record the outcome."""

from __future__ import annotations

import logging

from celery.exceptions import SoftTimeLimitExceeded

from shared import jobs, kinds
from shared.kinds import InvalidParams, Outcome
from shared.models import JobStatus
from worker.app import LadderCelery
from worker.runners import runner_for

log = logging.getLogger(__name__)


def execute(app: LadderCelery, job_id: str, worker: str, time_limit: float | None) -> None:
    """Run the job once if it still needs running; a finished or cancelled job is a no-op."""
    settings, db = app.settings, app.db
    job = jobs.claim(db, job_id, worker, settings.max_attempts)
    if job is None:
        log.info("job %s: nothing to run (finished, cancelled or already taken)", job_id)
        return
    attempt = job.attempt
    try:
        outcome = _run(job.kind, job.params, app)
    except InvalidParams as exc:
        jobs.finish(
            db,
            job_id,
            attempt,
            JobStatus.FAILED,
            error=jobs.error("invalid_params", str(exc)),
        )
        return
    except SoftTimeLimitExceeded:
        limit = time_limit or settings.time_limit(job.kind)
        jobs.finish(
            db,
            job_id,
            attempt,
            JobStatus.FAILED,
            error=jobs.error("timeout", f"the job ran past its time limit of {limit:g} s"),
        )
        return
    except Exception as exc:
        log.exception("job %s failed", job_id)
        jobs.finish(
            db,
            job_id,
            attempt,
            JobStatus.FAILED,
            error=jobs.error("internal", f"{type(exc).__name__}: {exc}"[:1000]),
        )
        return
    too_big = [
        n for n, (_, data) in outcome.artifacts.items() if len(data) > settings.max_artifact_bytes
    ]
    if too_big:
        message = f"artifact {too_big[0]} is over the limit of {settings.max_artifact_bytes} bytes"
        jobs.finish(
            db,
            job_id,
            attempt,
            JobStatus.FAILED,
            error=jobs.error("artifact_too_large", message),
        )
        return
    if not jobs.finish(
        db,
        job_id,
        attempt,
        JobStatus.SUCCEEDED,
        result=outcome.result,
        artifacts=outcome.artifacts,
    ):
        log.info(
            "job %s ended elsewhere (cancelled?) before attempt %d finished",
            job_id,
            attempt,
        )


def _run(kind_name: str, raw_params: dict[str, object], app: LadderCelery) -> Outcome:
    kind = kinds.get(kind_name)
    if kind is None:
        raise InvalidParams(
            [kinds.FieldError("kind", f"{kind_name!r} is not enabled on this worker")]
        )
    params = kind.parse(raw_params, app.settings)
    return runner_for(kind_name)(params, app.settings)
