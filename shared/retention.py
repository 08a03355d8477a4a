"""The retention purge: ended jobs older than the policy says, deleted in small batches.

The policy is `Settings.retention`: seconds an ended job is kept after it ended, by status; 0
keeps that status forever; queued and running jobs are never touched. A job's artifacts go with
it, and so does its Idempotency-Key, which lives on the job's row: once the row is gone the key
is free, and the same key sent again makes a new job.

Each batch is one short transaction (select by the (status, finished_at) index, delete the
artifacts and webhook deliveries, delete the jobs, tally them), so that the API and the workers
are never held up for long on either database. The job's Redis keys (its streams and cancel
flag) go after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import delete, select

from shared import streams, tallies
from shared.config import Settings
from shared.db import Database
from shared.models import FINISHED, Artifact, Job, JobStatus, WebhookDelivery
from shared.streams import Redis

log = logging.getLogger(__name__)

MOST_PER_BATCH = 10_000
"""A batch's ids are bound one by one, and SQLite takes at most 32,766 parameters a statement;
a larger batch would only hold the write lock longer anyway."""


def purge(
    db: Database,
    client: Redis,
    settings: Settings,
    now: datetime,
    after_batch: Callable[[], object] | None = None,
) -> dict[str, int]:
    """Delete every ended job that the policy no longer keeps at `now`; the count per status.

    `after_batch` is called after each committed batch (the workers' loop keeps its lock)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    size = min(max(1, settings.purge_batch), MOST_PER_BATCH)
    deleted: dict[str, int] = {}
    for status in sorted(FINISHED):
        keep = settings.retention.get(status, 0)
        if keep <= 0:
            continue
        try:
            before = now - timedelta(seconds=keep)
        except OverflowError:  # kept for longer than there are dates: nothing is that old
            continue
        deleted[str(status)] = 0
        while True:
            chosen, gone = _delete_batch(db, status, before, size)
            deleted[str(status)] += len(gone)
            _forget(client, gone)
            if after_batch is not None:
                after_batch()
            if chosen < size:
                break
    return deleted


def _delete_batch(
    db: Database, status: JobStatus, before: datetime, size: int
) -> tuple[int, list[str]]:
    """One transaction: how many jobs it chose, and the ids of those it deleted."""
    expired = (Job.status == status, Job.finished_at < before)
    with db.session() as session:
        # Oldest first, by the (status, finished_at) index. SKIP LOCKED (PostgreSQL): a row
        # someone is changing now (an admin's retry) is left for the next pass, not waited on.
        ids = list(
            session.scalars(
                select(Job.id)
                .where(*expired)
                .order_by(Job.finished_at)
                .limit(size)
                .with_for_update(skip_locked=True)
            )
        )
        if not ids:
            return 0, []
        # The conditions again, in case a job changed since it was chosen: on SQLite the
        # select holds no lock, and the first delete is what takes the write lock. `status ||
        # ''` keeps SQLite on the ids: with no statistics it would take `status = ?` to the
        # (status, finished_at) index, and scan every expired job in each batch.
        again = (Job.id.in_(ids), Job.status.concat("") == status, Job.finished_at < before)
        still = select(Job.id).where(*again)
        # Spelled out, though the foreign keys cascade: a SQLite connection opened without
        # PRAGMA foreign_keys (a shell, a tool) would otherwise leave them behind.
        for table in (Artifact, WebhookDelivery):
            session.execute(
                delete(table)
                .where(table.job_id.in_(still))
                .execution_options(synchronize_session=False)
            )
        gone = session.execute(
            delete(Job)
            .where(*again)
            .returning(Job.id, Job.kind, Job.duration_seconds)
            .execution_options(synchronize_session=False)
        ).all()
        tallies.add(session, [(row.kind, status, row.duration_seconds) for row in gone])
    return len(ids), [row.id for row in gone]


def _forget(client: Redis, job_ids: list[str]) -> None:
    """Delete the purged jobs' Redis keys. Best effort: they expire by themselves within
    streams.KEEP_SECONDS of the job's last event."""
    if not job_ids:
        return
    keys = [
        key
        for job_id in job_ids
        for key in (
            streams.stream_key(job_id),
            streams.status_key(job_id),
            streams.cancel_key(job_id),
        )
    ]
    try:
        client.delete(*keys)
    except RedisError:
        log.warning("purge: could not delete %d jobs' Redis keys", len(job_ids), exc_info=True)
