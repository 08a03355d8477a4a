"""The life of a job in the database, the source of truth.

Every change of state is one conditional UPDATE, so that whatever the broker re-delivers and
however workers race, a job starts an attempt once, and finishes once.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db import Database
from shared.models import Artifact, Job, JobStatus, utcnow

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def find(db: Database, job_id: str) -> Job | None:
    """The job with this id; None for an id that is not one (no query is made for it, so a
    hostile id never reaches the database)."""
    try:
        if str(uuid.UUID(job_id)) != job_id:
            return None
    except ValueError:
        return None
    with db.session() as session:
        return session.scalars(select(Job).where(Job.id == job_id)).first()


def find_artifact(db: Database, job_id: str, name: str) -> Artifact | None:
    """A file a job made; None for a name no job could have made (no query is made for it)."""
    if not ARTIFACT_NAME.match(name):
        return None
    with db.session() as session:
        return session.scalars(
            select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name)
        ).first()


def error(code: str, message: str) -> dict[str, str]:
    """A job's `error` object."""
    return {"code": code, "message": message}


@dataclass(frozen=True)
class Claim:
    """An attempt at a job that this worker now owns."""

    kind: str
    params: dict[str, Any]
    attempt: int
    queue: str
    started_at: datetime


def claim(db: Database, job_id: str, worker: str, max_attempts: int) -> Claim | None:
    """Start a new attempt at a job; None when there is nothing to run.

    A job found `running` was left so by a worker that died (the broker re-delivered its
    message): it runs again, until `max_attempts` is spent and it fails as `worker_lost`.
    One UPDATE … RETURNING both checks and claims, so the common path is one statement.
    """
    started = utcnow()
    with db.session() as session:
        row = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE), Job.attempts < max_attempts)
            .values(
                status=JobStatus.RUNNING,
                attempts=Job.attempts + 1,
                worker=worker,
                started_at=started,
                progress=0.0,
            )
            .returning(Job.kind, Job.params, Job.attempts, Job.queue)
        ).one_or_none()
        if row is not None:
            return Claim(row.kind, row.params, row.attempts, row.queue, started)
        lost = error("worker_lost", f"the worker running this job was lost {max_attempts} times")
        _finish(session, job_id, JobStatus.FAILED, error=lost, spent=max_attempts)
        return None


def finish(
    db: Database,
    job_id: str,
    attempt: int,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    artifacts: dict[str, tuple[str, bytes]] | None = None,
    started_at: datetime | None = None,
) -> bool:
    """Record how an attempt ended, with its artifacts; False when the job had already ended."""
    with db.session() as session:
        ended = _finish(
            session,
            job_id,
            status,
            result=result,
            error=error,
            attempt=attempt,
            started_at=started_at,
        )
        if not ended:
            return False
        for name, (content_type, data) in (artifacts or {}).items():
            session.add(
                Artifact(
                    job_id=job_id,
                    name=name,
                    content_type=content_type,
                    size=len(data),
                    data=data,
                )
            )
        return True


def keep_partial_result(db: Database, job_id: str, result: dict[str, Any]) -> bool:
    """Attach what a cancelled job had made when it stopped; the status stays `cancelled`."""
    with db.session() as session:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.CANCELLED, Job.result.is_(None))
            .values(result=result)
            .execution_options(synchronize_session=False)
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def retry(db: Database, job_id: str) -> bool:
    """Queue a failed job again as a new run of the same job; False unless it had failed."""
    with db.session() as session:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.FAILED)
            .values(
                status=JobStatus.QUEUED,
                result=None,
                error=None,
                worker=None,
                progress=0.0,
                attempts=0,
                started_at=None,
                finished_at=None,
                duration_seconds=None,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def fail_running(db: Database, job_id: str, error: dict[str, str]) -> bool:
    """End a running job as failed whatever its attempt (a hard time limit killed it)."""
    with db.session() as session:
        return _finish(session, job_id, JobStatus.FAILED, error=error)


def cancel(db: Database, job_id: str) -> bool:
    """Cancel a queued or running job; False when it had already ended."""
    with db.session() as session:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE))
            .values(
                status=JobStatus.CANCELLED,
                error=error("cancelled", "cancelled at the client's request"),
                finished_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def _finish(
    session: Session,
    job_id: str,
    status: JobStatus,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    attempt: int | None = None,
    spent: int | None = None,
    started_at: datetime | None = None,
) -> bool:
    conditions = [Job.id == job_id, Job.status == JobStatus.RUNNING]
    if attempt is not None:
        conditions.append(Job.attempts == attempt)
    if spent is not None:
        conditions.append(Job.attempts >= spent)
    values: dict[str, Any] = {"status": status, "result": result, "error": error}
    values["finished_at"] = utcnow()
    if started_at is not None:
        values["duration_seconds"] = (values["finished_at"] - started_at).total_seconds()
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    done = session.execute(
        update(Job).where(*conditions).values(**values).execution_options(synchronize_session=False)
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]
