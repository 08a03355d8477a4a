"""The retention purge for real, on SQLite and PostgreSQL: under load it deletes exactly what the
policy says (rows, artifacts, Redis keys, and nothing else), and the workers run it by
themselves (every PURGE_EVERY seconds in the tests)."""

from __future__ import annotations

import dataclasses
import random
import re
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update

from shared import jobs, streams, tallies
from shared.db import Database
from shared.models import ApiKey, Artifact, Job, JobTally, utcnow
from shared.retention import purge
from tests.processes import Stack
from tests.support import add_job, wait_for
from worker.purger import PASSES

HOUR = 3_600
POLICY = {"succeeded": HOUR, "failed": 2 * HOUR, "cancelled": 0}
"""Stricter than the default policy, which the stack's workers purge by all the while, for every
job this test makes: what goes is this test's purge's doing alone."""
SEEDED = 6_000


def seed(db: Database, now: datetime) -> list[dict[str, Any]]:
    """SEEDED ended jobs, finished up to 3 hours before `now` (some exactly at a bound, or a
    second either side), a fifth with an artifact, inserted in bulk."""
    rng = random.Random(14)
    edges = [bound + d for bound in (HOUR, 2 * HOUR) for d in (-1, 0, 1)]
    with db.session() as session:
        owner = session.scalar(select(ApiKey.id).where(ApiKey.is_admin).order_by(ApiKey.id))
    rows = []
    for i in range(SEEDED):
        age = edges[i // 3] if i < 3 * len(edges) else rng.randrange(0, 3 * HOUR)
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "api_key_id": owner,
                "kind": "stairs" if i % 4 else "attention",
                "status": ("succeeded", "failed", "cancelled")[i % 3],
                "params": {"n": i},
                "priority": 5,
                "device": "auto",
                "queue": "cpu",
                "created_at": now - timedelta(seconds=age + 5),
                "finished_at": now - timedelta(seconds=age),
                "duration_seconds": rng.choice([None, 0.003, 0.2, 2.5, 400.0]),
            }
        )
    files = [
        {"job_id": row["id"], "name": "value.txt", "content_type": "text/plain", "size": 2,
         "data": b"21"}
        for row in rows[::5]
    ]  # fmt: skip
    with db.session() as session:
        session.execute(insert(Job), rows)
        session.execute(insert(Artifact), files)
    return rows


def snapshot(db: Database) -> dict[str, tuple[str, str, datetime | None]]:
    """Every job now: (kind, status, finished_at) by id."""
    with db.session() as session:
        found = session.execute(select(Job.id, Job.kind, Job.status, Job.finished_at)).all()
    return {row.id: (row.kind, row.status, _utc(row.finished_at)) for row in found}


def _utc(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def tally_counts(db: Database) -> Counter[tuple[str, str]]:
    with db.session() as session:
        rows = session.execute(select(JobTally.kind, JobTally.status, JobTally.jobs)).all()
    return Counter({(row.kind, row.status): row.jobs for row in rows})


def redis_keys(client: streams.Redis, job_id: str) -> int:
    return int(client.exists(streams.stream_key(job_id), streams.status_key(job_id)))


def test_a_purge_under_load_deletes_exactly_what_the_policy_says(stack: Stack) -> None:
    db = Database(stack.settings.database_url)
    redis = streams.connect(stack.settings.broker_url)
    policy = dataclasses.replace(stack.settings, retention=POLICY, purge_batch=500)
    try:
        # Given thousands of ended jobs of every age up to 3 hours, some followed in Redis
        now = utcnow()
        seeded = seed(db, now)
        followed = [row["id"] for row in seeded[::7]]
        pipe = redis.pipeline(transaction=False)
        for job_id in followed:
            streams.add(pipe, job_id, "status", {"status": "succeeded"})
        pipe.execute()
        before = snapshot(db)
        expired = {
            job_id
            for job_id, (_, status, finished) in before.items()
            if POLICY.get(status, 0) > 0
            and finished is not None
            and finished < now - timedelta(seconds=POLICY[status])
        }
        assert 1_500 < len(expired) < 4_000
        tallied = tally_counts(db)
        # And clients submitting and reading jobs all the while
        stop, live, reads = threading.Event(), [], Counter[int]()

        def load() -> None:
            n = 0
            while not stop.is_set():
                live.append(stack.client.submit({"n": n % 50})["id"])
                reads[stack.client.call("GET", f"/api/v1/jobs/{live[-1]}").status] += 1
                n += 1

        threads = [threading.Thread(target=load) for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(live) >= 10, "live submissions under way", 10)
        # When the purge runs
        try:
            deleted = purge(db, redis, policy, now)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        # Then exactly the expired jobs are gone, with their artifacts and Redis keys
        after = snapshot(db)
        assert set(after) == (set(before) - expired) | set(live)
        with db.session() as session:
            owners = set(session.scalars(select(Artifact.job_id).distinct()))
        assert owners.isdisjoint(expired)
        assert {row["id"] for row in seeded[::5]} - expired <= owners
        assert [j for j in followed if j in expired and redis_keys(redis, j)] == []
        assert all(redis_keys(redis, j) == 2 for j in followed if j not in expired)
        # And counted: by status in the answer, by kind and status in the tallies
        by_status = Counter(before[j][1] for j in expired)
        assert deleted == {"failed": by_status["failed"], "succeeded": by_status["succeeded"]}
        gained = tally_counts(db) - tallied
        assert gained == Counter((before[j][0], before[j][1]) for j in expired)
        # And a purged job is 404, a kept one is not, and every live one was served throughout
        purged, kept = sorted(expired)[0], sorted(set(before) - expired)[0]
        assert stack.client.call("GET", f"/api/v1/jobs/{purged}").status == 404
        assert stack.client.call("GET", f"/api/v1/jobs/{kept}").status == 200
        assert reads == Counter({200: len(live)})
        for job_id in live[-3:]:
            assert stack.client.wait(job_id, timeout=30)["status"] == "succeeded"
    finally:
        db.engine.dispose()
        redis.close()


def test_the_workers_purge_by_themselves(stack: Stack) -> None:
    # Given, under the default policy (succeeded 7 d, failed 30 d, cancelled 7 d), a job past
    # it and two within it
    db = Database(stack.settings.database_url)
    redis = streams.connect(stack.settings.broker_url)
    try:
        ago = utcnow() - timedelta(days=8)
        # Running while its artifact is added (a purge every second must not see it half-made),
        # then ended 8 days ago in one statement.
        old = add_job(db, status="running")
        with db.session() as session:
            session.add(Artifact(job_id=old, name="value.txt", content_type="text/plain",
                                 size=2, data=b"21"))  # fmt: skip
        with db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == old)
                .values(status="succeeded", finished_at=ago, duration_seconds=1.0)
            )
        kept = [
            add_job(db, status="failed", finished_at=ago),
            add_job(db, status="cancelled", finished_at=utcnow() - timedelta(days=6)),
        ]
        # When the workers' purge comes round, the old job is gone, and its artifact with it
        wait_for(
            lambda: stack.client.call("GET", f"/api/v1/jobs/{old}").status == 404,
            "the workers' purge of a job past retention",
            15,
        )
        with db.session() as session:
            left = session.scalar(select(func.count()).where(Artifact.job_id == old))
        assert left == 0
        # And two whole passes later, the jobs within the policy are still there
        start = int(redis.get(PASSES) or 0)
        wait_for(lambda: int(redis.get(PASSES) or 0) >= start + 3, "two more purge passes", 15)
        assert [stack.client.call("GET", f"/api/v1/jobs/{j}").status for j in kept] == [200, 200]
        logs = stack.worker.log_text() + stack.generator.log_text()
        assert re.search(r"purge: deleted \d+ ended jobs past retention: \d+ succeeded", logs)
    finally:
        db.engine.dispose()
        redis.close()


def test_a_retried_failure_is_tallied_on_either_database(stack: Stack) -> None:
    db = Database(stack.settings.database_url)
    try:
        job_id = add_job(db, status="failed", finished_at=utcnow(), duration_seconds=0.2)
        before = tally_counts(db)[("stairs", tallies.RETRIED)]
        assert jobs.retry(db, job_id)
        assert not jobs.retry(db, job_id)
        assert tally_counts(db)[("stairs", tallies.RETRIED)] == before + 1
        # Queued again with no message sent: the reconciler sends it, and it runs once more.
        assert stack.client.wait(job_id, timeout=30)["status"] == "succeeded"
    finally:
        db.engine.dispose()
