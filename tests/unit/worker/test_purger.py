"""The purge's schedule in a worker, on SQLite and fakeredis: one pass at a time across workers,
the lock held for a period, and what was deleted logged."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from shared.models import utcnow
from tests.support import add_job, job_count
from worker import purger
from worker.app import LadderCelery


def old_job(app: LadderCelery) -> str:
    """A succeeded job older than the default retention (7 days)."""
    return add_job(app.db, status="succeeded", finished_at=utcnow() - timedelta(days=8))


def test_a_pass_takes_the_lock_for_a_period_and_logs_what_it_deleted(
    app: LadderCelery, caplog: pytest.LogCaptureFixture
) -> None:
    old_job(app)
    add_job(app.db, status="succeeded", finished_at=utcnow() - timedelta(days=6))
    with caplog.at_level("INFO", logger="worker.purger"):
        assert purger.run_once(app) == {"cancelled": 0, "failed": 0, "succeeded": 1}
    assert job_count(app.db) == 1
    assert "purge: deleted 1 ended jobs past retention: 1 succeeded" in caplog.text
    assert 0 < app.redis.ttl(purger.LOCK) <= app.settings.purge_every
    assert int(app.redis.get(purger.PASSES) or 0) == 1


def test_no_pass_while_another_worker_holds_the_lock(app: LadderCelery) -> None:
    old_job(app)
    app.redis.set(purger.LOCK, "1", ex=60)  # another worker's pass, or its period
    assert purger.run_once(app) is None
    assert job_count(app.db) == 1
    app.redis.delete(purger.LOCK)
    assert purger.run_once(app) == {"cancelled": 0, "failed": 0, "succeeded": 1}
    assert job_count(app.db) == 0


def test_a_long_pass_renews_its_lock_after_each_batch(app: LadderCelery) -> None:
    app.settings = dataclasses.replace(app.settings, purge_batch=1, purge_every=5)
    for _ in range(3):
        old_job(app)
    seen: list[int] = []
    expire = app.redis.expire
    app.redis.expire = lambda key, ttl: seen.append(ttl) or expire(key, ttl)  # type: ignore[method-assign]
    purger.run_once(app)
    assert job_count(app.db) == 0
    # cancelled and failed: an empty batch each; succeeded: three, then an empty one
    assert seen == [5] * 6


def test_purge_every_zero_installs_no_loop(app: LadderCelery) -> None:
    from celery.signals import worker_ready

    app.settings = dataclasses.replace(app.settings, purge_every=0)
    before = len(worker_ready.receivers)
    purger.install(app)
    assert len(worker_ready.receivers) == before
