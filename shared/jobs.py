"""The life of a job in the database, the source of truth.

Every change of state is one conditional UPDATE, so that whatever the broker re-delivers and
however workers race, a job starts an attempt once, and finishes once.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import deliveries, tallies
from shared.db import Database
from shared.kinds import FieldError, InvalidParams
from shared.kinds.base import one_line
from shared.models import ApiKey, Artifact, Job, JobStatus, utcnow

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_IDEMPOTENCY_KEY = 255
"""The longest Idempotency-Key a client may send (the column's width)."""


class IdempotencyConflict(Exception):
    """An Idempotency-Key sent again with a different body."""


class QuotaExceeded(Exception):
    """The key already has as many queued and running jobs as it may."""

    def __init__(self, limit: int, active: int) -> None:
        super().__init__(f"{active} active jobs, limit {limit}")
        self.limit, self.active = limit, active


@dataclass(frozen=True)
class NewJob:
    """A validated, routed submission: everything a `jobs` row needs but its id."""

    owner: int
    kind: str
    params: dict[str, Any]
    priority: int
    device: str
    queue: str
    callback_url: str | None = None
    """Checked already (shared.webhooks.check_url): where to POST the job when it ends."""


def create(
    db: Database,
    new: NewJob,
    body: Any = None,
    idempotency_key: str | None = None,
    max_active: int = 0,
) -> tuple[Job, bool]:
    """Commit a queued job, and say whether it is new.

    With an Idempotency-Key, the same key and body give back the job they made the first time
    (created False) and the same key with another body raises IdempotencyConflict; two requests
    racing with one key make one job. A malformed key raises InvalidParams. With `max_active`,
    a key that already has that many queued or running jobs gets QuotaExceeded (0: no limit).
    """
    made, created = _create(db, [new], body, idempotency_key, max_active, batch=False)
    return made[0], created


def create_batch(
    db: Database,
    batch: list[NewJob],
    body: Any = None,
    idempotency_key: str | None = None,
    max_active: int = 0,
) -> tuple[list[Job], bool]:
    """Commit several queued jobs in one transaction, in order; `create`'s rules, with one
    Idempotency-Key standing for the whole batch and the quota counting every job of it."""
    return _create(db, batch, body, idempotency_key, max_active, batch=True)


def _create(
    db: Database, news: list[NewJob], body: Any, key: str | None, max_active: int, *, batch: bool
) -> tuple[list[Job], bool]:
    digest = None
    if key is not None:
        _check_idempotency_key(key)
        # A batch hashes differently from a single job, so one key cannot stand for both.
        hashed = {"batch": body} if batch else body
        digest = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()
        if (existing := _by_idempotency_key(db, news[0].owner, key, digest)) is not None:
            return existing, False
    first_id = str(uuid.uuid4())
    made = [
        Job(
            id=first_id if i == 0 else str(uuid.uuid4()),
            api_key_id=new.owner,
            kind=new.kind,
            status=JobStatus.QUEUED,
            params=new.params,
            priority=new.priority,
            device=new.device,
            queue=new.queue,
            # The key and hash sit on the first job; the batch id ties the others to it.
            idempotency_key=key if i == 0 else None,
            request_hash=digest if i == 0 else None,
            batch_id=first_id if batch else None,
            callback_url=new.callback_url,
        )
        for i, new in enumerate(news)
    ]
    try:
        with db.session() as session:
            if max_active > 0:
                _check_quota(session, news[0].owner, len(news), max_active)
            session.add_all(made)
    except (IntegrityError, QuotaExceeded):
        # A request with the same Idempotency-Key committed first: its jobs are the answer
        # (and they, not this request, may be what filled the quota).
        existing = None
        if key is not None and digest is not None:
            existing = _by_idempotency_key(db, news[0].owner, key, digest)
        if existing is None:
            raise
        return existing, False
    return made, True


def _check_quota(session: Session, owner: int, adding: int, limit: int) -> None:
    """Raise QuotaExceeded unless the owner's active jobs plus `adding` fit under `limit`.

    The UPDATE comes first so that two submissions by one key cannot both count, then both
    insert: it takes the key's row lock on PostgreSQL and the write lock on SQLite until commit.
    """
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == owner)
        .values(max_active_jobs=ApiKey.max_active_jobs)  # changes nothing: only the lock counts
        .execution_options(synchronize_session=False)
    )
    active = session.scalar(
        select(func.count()).select_from(Job).where(Job.api_key_id == owner, Job.status.in_(ACTIVE))
    )
    if (active or 0) + adding > limit:
        raise QuotaExceeded(limit, active or 0)


def discard(db: Database, job_ids: list[str]) -> None:
    """Delete jobs whose messages could not be sent, so that nothing half-exists."""
    with db.session() as session:
        session.execute(delete(Job).where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED))


def _check_idempotency_key(key: str) -> None:
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY and all(" " <= c <= "~" for c in key)):
        message = f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        raise InvalidParams([FieldError("Idempotency-Key", message)])


def _by_idempotency_key(db: Database, owner: int, key: str, digest: str) -> list[Job] | None:
    """The jobs a key made before (the whole batch, for a batch), or None."""
    with db.session() as session:
        job = session.scalars(
            select(Job).where(Job.api_key_id == owner, Job.idempotency_key == key)
        ).first()
        if job is not None and job.request_hash != digest:
            raise IdempotencyConflict("this Idempotency-Key was used with a different body")
        if job is None or job.batch_id is None:
            return None if job is None else [job]
        return list(
            session.scalars(select(Job).where(Job.batch_id == job.batch_id).order_by(Job.seq))
        )


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


CANCELLED = error("cancelled", "cancelled at the client's request")


def error_summary(error: dict[str, str]) -> str:
    return one_line(f"{error.get('code')}: {error.get('message')}")


@dataclass(frozen=True)
class Claim:
    """An attempt at a job that this worker now owns."""

    kind: str
    params: dict[str, Any]
    attempt: int
    queue: str
    started_at: datetime


_CLAIM = (
    update(Job)
    .where(
        Job.id == bindparam("id_"),
        Job.status.in_(ACTIVE),
        Job.attempts < bindparam("limit"),
    )
    .values(
        status=JobStatus.RUNNING,
        attempts=Job.attempts + 1,
        worker=bindparam("worker_"),
        started_at=bindparam("started"),
        progress=0.0,
    )
    .returning(Job.kind, Job.params, Job.attempts, Job.queue)
)
"""Built once: every job runs it, and building a statement costs more than running it."""


def claim(db: Database, job_id: str, worker: str, max_attempts: int) -> Claim | None:
    """Start a new attempt at a job; None when there is nothing to run.

    A job found `running` was left so by a worker that died (the broker re-delivered its
    message): it runs again, until `max_attempts` is spent (then see `give_up`).
    One UPDATE … RETURNING both checks and claims, so the common path is one statement.
    """
    started = utcnow()
    values = {"id_": job_id, "limit": max_attempts, "worker_": worker, "started": started}
    with db.session() as session:
        row = session.execute(_CLAIM, values).one_or_none()
        if row is None:
            return None
        return Claim(row.kind, row.params, row.attempts, row.queue, started)


_PROGRESS = (
    update(Job)
    .where(
        Job.id == bindparam("id_"),
        Job.status == JobStatus.RUNNING,
        Job.attempts == bindparam("attempt"),
    )
    .values(progress=bindparam("fraction"))
    .execution_options(synchronize_session=False)
)


def record_progress(db: Database, job_id: str, attempt: int, fraction: float) -> bool:
    """Write how far a running attempt has come; False when the job is no longer that attempt
    running (it ended, was cancelled, or another attempt took it), which it leaves alone."""
    values = {"id_": job_id, "attempt": attempt, "fraction": fraction}
    with db.session() as session:
        return bool(session.execute(_PROGRESS, values).rowcount == 1)  # type: ignore[attr-defined]


def give_up(db: Database, job_id: str, max_attempts: int) -> bool:
    """Fail a running job whose workers died `max_attempts` times (`worker_lost`); False when
    the job is not such a job (it had ended, say)."""
    lost = error("worker_lost", f"the worker running this job was lost {max_attempts} times")
    with db.session() as session:
        return _finish(session, job_id, JobStatus.FAILED, error=lost, spent=max_attempts)


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
    summary: str | None = None,
) -> bool:
    """Record how an attempt ended, with its artifacts and a line for listings (for a failed
    job, its error's); False when the job had already ended."""
    with db.session() as session:
        ended = _finish(
            session,
            job_id,
            status,
            result=result,
            error=error,
            attempt=attempt,
            started_at=started_at,
            summary=summary,
        )
        if ended:
            _add_artifacts(session, job_id, artifacts or {})
        return ended


def keep_partial_result(
    db: Database,
    job_id: str,
    result: dict[str, Any],
    artifacts: dict[str, tuple[str, bytes]] | None = None,
) -> bool:
    """Attach what a cancelled job had made when it stopped, with its files (result.json for a
    large result, which the result points to); the status stays `cancelled`."""
    with db.session() as session:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.CANCELLED, Job.result.is_(None))
            .values(result=result)
            .execution_options(synchronize_session=False)
        )
        kept = bool(done.rowcount == 1)  # type: ignore[attr-defined]
        if kept:
            _add_artifacts(session, job_id, artifacts or {})
        return kept


def _add_artifacts(session: Session, job_id: str, artifacts: dict[str, tuple[str, bytes]]) -> None:
    for name, (content_type, data) in artifacts.items():
        session.add(
            Artifact(job_id=job_id, name=name, content_type=content_type, size=len(data), data=data)
        )


def retry(db: Database, job_id: str) -> bool:
    """Queue a failed job again as a new run of the same job; False unless it had failed.

    The failure leaves the `jobs` counts, so it is tallied (see shared.tallies). A webhook
    delivery of the failure still pending is superseded: the new run's ending is told instead."""
    with db.session() as session:
        # Locked on PostgreSQL; on SQLite the UPDATE's finished_at condition does the same,
        # so that the failure tallied is the one this retry clears.
        failed = session.execute(
            select(Job.kind, Job.duration_seconds, Job.finished_at)
            .where(Job.id == job_id, Job.status == JobStatus.FAILED)
            .with_for_update()
        ).one_or_none()
        if failed is None:
            return False
        done = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.status == JobStatus.FAILED,
                Job.finished_at == failed.finished_at,
            )
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
                summary=None,
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return False
        # The new run makes its own files, under the same names.
        session.execute(delete(Artifact).where(Artifact.job_id == job_id))
        # And its own webhook delivery when it ends: the failed run's is no longer tried.
        deliveries.supersede(session, job_id)
        tallies.add(session, [(failed.kind, tallies.RETRIED, failed.duration_seconds)])
        return True


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
                error=CANCELLED,
                summary=error_summary(CANCELLED),
                finished_at=utcnow(),
            )
            .returning(Job.callback_url)
            .execution_options(synchronize_session=False)
        ).one_or_none()
        return _ended(session, job_id, done)


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
    summary: str | None = None,
) -> bool:
    conditions = [Job.id == job_id, Job.status == JobStatus.RUNNING]
    if attempt is not None:
        conditions.append(Job.attempts == attempt)
    if spent is not None:
        conditions.append(Job.attempts >= spent)
    if error is not None:
        summary = error_summary(error)
    values: dict[str, Any] = {"status": status, "result": result, "error": error}
    values["summary"] = summary
    values["finished_at"] = utcnow()
    if started_at is not None:
        values["duration_seconds"] = (values["finished_at"] - started_at).total_seconds()
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    done = session.execute(
        update(Job)
        .where(*conditions)
        .values(**values)
        .returning(Job.callback_url)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    return _ended(session, job_id, done)


def _ended(session: Session, job_id: str, done: Row[str | None] | None) -> bool:
    """Whether an UPDATE … RETURNING callback_url ended the job; if it did, and the job has a
    callback, its webhook delivery is made in the same transaction, so that no ending is
    ever left untold, however the job ended (a worker, a cancel, the reconciler's give-up)."""
    if done is None:
        return False
    if done.callback_url is not None:
        deliveries.add(session, job_id, done.callback_url)
    return True
