"""The retention purge on SQLite and fakeredis: it deletes exactly the ended jobs the policy no
longer keeps (rows, artifacts, Redis keys), in batches, and tallies what it deleted; a retried
failure is tallied too."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import fakeredis
import pytest
from sqlalchemy import event, select

from shared import jobs, streams, tallies
from shared.config import Settings
from shared.db import Database
from shared.models import Artifact, Job, JobStatus, JobTally, utcnow
from shared.retention import purge
from tests.support import add_job

HOUR = 3_600
NOW = utcnow()


@pytest.fixture
def redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def policy(settings: Settings) -> Settings:
    """Succeeded jobs kept an hour, failed two, cancelled forever."""
    return dataclasses.replace(
        settings, retention={"succeeded": HOUR, "failed": 2 * HOUR, "cancelled": 0}
    )


def ended(db: Database, status: str, ago: float, **values: Any) -> str:
    """A job that ended `ago` seconds before NOW, with a value.txt artifact."""
    job_id = add_job(db, status=status, finished_at=NOW - timedelta(seconds=ago), **values)
    with db.session() as session:
        session.add(Artifact(job_id=job_id, name="value.txt", content_type="text/plain",
                             size=2, data=b"21"))  # fmt: skip
    return job_id


def with_keys(redis: fakeredis.FakeRedis, job_id: str) -> str:
    streams.publish(redis, job_id, "status", {"status": "succeeded"})
    streams.request_cancel(redis, job_id)
    return job_id


def remaining(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Job.id)))


def artifact_owners(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Artifact.job_id)))


def redis_keys(redis: fakeredis.FakeRedis, job_id: str) -> int:
    return int(
        redis.exists(
            streams.stream_key(job_id), streams.status_key(job_id), streams.cancel_key(job_id)
        )
    )


def tally(db: Database, kind: str, status: str) -> JobTally | None:
    with db.session() as session:
        return session.get(JobTally, (kind, status))


def test_purge_deletes_exactly_the_jobs_past_their_statuss_retention(
    db: Database, policy: Settings, redis: fakeredis.FakeRedis
) -> None:
    # Given ended jobs on either side of each status's window, and active jobs of any age
    gone = {
        with_keys(redis, ended(db, "succeeded", HOUR + 1)),
        with_keys(redis, ended(db, "failed", 2 * HOUR + 1)),
        ended(db, "failed", 400 * 24 * HOUR),
    }
    followed = with_keys(redis, ended(db, "succeeded", HOUR - 1))
    kept_ended = {
        followed,
        ended(db, "succeeded", HOUR),  # exactly at the bound: not yet older than it
        ended(db, "failed", 2 * HOUR - 1),
        ended(db, "cancelled", 10_000 * 24 * HOUR),  # 0 keeps forever
        # Never so, but even a running job with an old finished_at is not the purge's to take.
        ended(db, "running", 400 * 24 * HOUR),
    }
    active = {
        add_job(db, status=JobStatus.QUEUED, created_at=NOW - timedelta(days=400)),
        add_job(db, status=JobStatus.RUNNING, started_at=NOW - timedelta(days=400)),
    }
    # When the purge runs
    deleted = purge(db, redis, policy, NOW)
    # Then exactly the expired jobs are gone, with their artifacts and Redis keys
    assert deleted == {"failed": 2, "succeeded": 1}
    assert remaining(db) == kept_ended | active
    assert artifact_owners(db) == kept_ended
    assert [redis_keys(redis, job_id) for job_id in gone] == [0, 0, 0]
    assert redis_keys(redis, followed) == 3
    # And a second pass finds nothing more
    assert purge(db, redis, policy, NOW) == {"failed": 0, "succeeded": 0}


def test_retention_zero_everywhere_keeps_everything(
    db: Database, settings: Settings, redis: fakeredis.FakeRedis
) -> None:
    forever = dataclasses.replace(settings, retention={"succeeded": 0, "failed": 0, "cancelled": 0})
    ids = {ended(db, status, 10_000 * 24 * HOUR) for status in ("succeeded", "failed", "cancelled")}
    assert purge(db, redis, forever, NOW) == {}
    assert remaining(db) == ids


def test_a_retention_longer_than_the_calendar_keeps_everything(
    db: Database, settings: Settings, redis: fakeredis.FakeRedis
) -> None:
    endless = dataclasses.replace(settings, retention={"succeeded": 10**13})
    job_id = ended(db, "succeeded", 10_000 * 24 * HOUR)
    assert purge(db, redis, endless, NOW) == {}
    assert remaining(db) == {job_id}


def test_purge_works_in_batches_until_nothing_is_left(
    db: Database, policy: Settings, redis: fakeredis.FakeRedis
) -> None:
    small = dataclasses.replace(policy, purge_batch=3)
    expired = [ended(db, "succeeded", HOUR + 1 + i) for i in range(10)]  # youngest first
    kept = ended(db, "succeeded", 60)
    batches: list[set[str]] = []
    deleted = purge(db, redis, small, NOW, after_batch=lambda: batches.append(remaining(db)))
    assert deleted["succeeded"] == 10
    # One empty look at failed (cancelled is kept forever), then succeeded three jobs a
    # transaction, oldest first, until a batch comes back short.
    assert [left - {kept} for left in batches] == [
        set(expired),
        set(expired[:7]),
        set(expired[:4]),
        set(expired[:1]),
        set(),
    ]
    assert remaining(db) == {kept}


def test_each_batch_finds_its_jobs_by_id_not_by_the_whole_expired_range(
    db: Database, policy: Settings, redis: fakeredis.FakeRedis
) -> None:
    # Without statistics SQLite would plan `status = ? AND finished_at < ?` by their index,
    # reading every expired job in each batch: a purge of 100,000 jobs went at 3,000 a second.
    deletes: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("DELETE"):
            deletes.append((statement, params))

    for i in range(30):
        ended(db, "succeeded", HOUR + 1 + i)
    event.listen(db.engine, "before_cursor_execute", record)
    purge(db, redis, dataclasses.replace(policy, purge_batch=20), NOW)
    assert len(deletes) == 6  # artifacts, webhook deliveries, then jobs, in each of two batches
    with db.engine.connect() as connection:
        for statement, params in deletes:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
            used = " ".join(row[-1] for row in plan)
            assert "ix_jobs_status_finished" not in used and "ix_jobs_finished_at" not in used
            assert "sqlite_autoindex_jobs" in used or "INTEGER PRIMARY KEY" in used, used


def test_a_naive_now_is_taken_as_utc(
    db: Database, policy: Settings, redis: fakeredis.FakeRedis
) -> None:
    job_id = ended(db, "succeeded", HOUR + 60)
    naive = datetime.fromisoformat(NOW.isoformat()).replace(tzinfo=None)
    assert purge(db, redis, policy, naive)["succeeded"] == 1
    assert job_id not in remaining(db)


def test_purged_jobs_are_tallied_by_kind_status_and_duration(
    db: Database, policy: Settings, redis: fakeredis.FakeRedis
) -> None:
    for duration in (0.02, 2.0, None):
        ended(db, "succeeded", HOUR + 1, duration_seconds=duration)
    ended(db, "failed", 3 * HOUR, kind="attention", duration_seconds=400.0,
          params={"q": [[1.0]], "k": [[1.0]], "v": [[1.0]]})  # fmt: skip
    purge(db, redis, policy, NOW)
    stairs = tally(db, "stairs", "succeeded")
    assert stairs is not None
    assert (stairs.jobs, stairs.duration_count) == (3, 2)
    assert stairs.duration_sum == pytest.approx(2.02)
    under = dict(zip(tallies.BUCKETS, stairs.duration_buckets or [], strict=True))
    assert (under[0.01], under[0.05], under[1], under[5], under[900]) == (0, 1, 1, 2, 2)
    attention = tally(db, "attention", "failed")
    assert attention is not None and attention.jobs == 1
    assert (attention.duration_buckets or [])[-2:] == [0, 1]  # over 300 s, under 900 s
    # A later purge adds to the same rows.
    ended(db, "succeeded", HOUR + 1, duration_seconds=0.5)
    purge(db, redis, policy, NOW)
    again = tally(db, "stairs", "succeeded")
    assert again is not None and (again.jobs, again.duration_count) == (4, 3)
    assert (again.duration_buckets or [])[tallies.BUCKETS.index(0.5)] == 2


def test_the_metrics_and_the_tallies_share_their_buckets() -> None:
    from api import metrics

    assert tuple(metrics.BUCKETS) == tallies.BUCKETS


def test_a_purged_jobs_idempotency_key_is_free_again(
    db: Database, policy: Settings, redis: fakeredis.FakeRedis
) -> None:
    owner = add_job(db)  # makes the key the jobs belong to
    with db.session() as session:
        key_id = session.scalar(select(Job.api_key_id).where(Job.id == owner))
    assert key_id is not None
    new = jobs.NewJob(key_id, "stairs", {"n": 5}, 5, "auto", "cpu")
    first, created = jobs.create(db, new, {"n": 5}, idempotency_key="once")
    assert created
    with db.session() as session:
        job = session.get(Job, first.seq)
        assert job is not None
        job.status, job.finished_at = JobStatus.SUCCEEDED, NOW - timedelta(seconds=HOUR + 1)
    assert jobs.create(db, new, {"n": 5}, idempotency_key="once")[1] is False
    purge(db, redis, policy, NOW)
    second, created = jobs.create(db, new, {"n": 5}, idempotency_key="once")
    assert created and second.id != first.id


def test_a_retried_failure_is_tallied_once_and_loses_its_artifacts(db: Database) -> None:
    job_id = ended(db, "failed", 60, duration_seconds=3.0)
    assert jobs.retry(db, job_id)
    assert not jobs.retry(db, job_id)  # queued now: not a failure to retry
    retried = tally(db, "stairs", tallies.RETRIED)
    assert retried is not None
    assert (retried.jobs, retried.duration_count, retried.duration_sum) == (1, 1, 3.0)
    assert job_id not in artifact_owners(db)
    with db.session() as session:
        job = session.get(Job, session.scalar(select(Job.seq).where(Job.id == job_id)))
        assert job is not None
        assert (job.status, job.finished_at, job.duration_seconds) == ("queued", None, None)
