"""`/metrics` over real HTTP on the real Redis and database: the token it wants when one is
set, one rendering shared by every API process for a few seconds, and counters that stay up
when a job's row leaves for the tallies."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

import redis
from sqlalchemy import delete

from api import metrics
from shared import tallies
from shared.config import Settings
from shared.db import Database
from shared.models import Job
from tests.processes import Stack, served_app
from tests.support import Client, add_job

TOKEN = "tests-metrics-token-of-32-characters"


@contextlib.contextmanager
def served(settings: Settings) -> Iterator[str]:
    """Another API process on the stack's Redis and database; the cached metrics and failed
    authentications (wrong metrics tokens) it leaves in Redis are cleared after."""
    try:
        with served_app(settings) as base:
            yield base
    finally:
        client = redis.Redis.from_url(settings.broker_url)
        client.delete(metrics.CACHE_KEY, *client.scan_iter("ladder:authfail:*"))


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(base: str) -> str:
    reply = Client(base, TOKEN).call("GET", "/metrics")
    assert reply.status == 200, reply.body
    return reply.body.decode()


def guarded(stack: Stack) -> Settings:
    return dataclasses.replace(stack.settings, metrics_token=TOKEN)


def test_with_a_metrics_token_set_a_scrape_needs_it(stack: Stack) -> None:
    with served(guarded(stack)) as base:
        for token in (None, "wrong", stack.client.token):  # an admin key is not the token
            reply = Client(base, token).call("GET", "/metrics")
            assert reply.status == 401, reply.body
            assert reply.headers["Content-Type"] == "application/problem+json"
            assert b"ladder_" not in reply.body
        assert "ladder_jobs_submitted_total" in scrape(base)


def test_scrapes_of_many_processes_within_seconds_share_one_rendering(stack: Stack) -> None:
    db = Database(stack.settings.database_url)
    cache = redis.Redis.from_url(stack.settings.broker_url)
    cache.delete(metrics.CACHE_KEY)
    with served(guarded(stack)) as first, served(guarded(stack)) as second:
        before = scrape(first)
        add_job(db)  # a new queued job, between two scrapes
        assert scrape(second) == before  # the other process read the first one's text
        assert 0 < cache.ttl(metrics.CACHE_KEY) <= metrics.CACHE_SECONDS
        deadline = time.monotonic() + metrics.CACHE_SECONDS + 5
        while (after := scrape(second)) == before:
            assert time.monotonic() < deadline, "the cached metrics never expired"
            time.sleep(0.5)
        submitted = "ladder_jobs_submitted_total"
        assert value(after, submitted, kind="stairs") == value(before, submitted, kind="stairs") + 1
    db.engine.dispose()


def test_counters_stay_up_when_a_finished_job_leaves_for_the_tallies(stack: Stack) -> None:
    job = stack.client.wait(stack.client.submit({"n": 21})["id"])
    assert job["status"] == "succeeded"
    db = Database(stack.settings.database_url)
    cache = redis.Redis.from_url(stack.settings.broker_url)
    names = [("ladder_jobs_submitted_total", {"kind": "stairs"}),
             ("ladder_jobs_finished_total", {"kind": "stairs", "status": "succeeded"}),
             ("ladder_job_duration_seconds_count", {"kind": "stairs"}),
             ("ladder_job_duration_seconds_bucket", {"kind": "stairs", "le": "+Inf"})]  # fmt: skip
    with served(guarded(stack)) as base:
        cache.delete(metrics.CACHE_KEY)
        before = scrape(base)
        # The purge's move, as shared.retention makes it: the row out, its tally up, at once.
        with db.session() as session:
            gone = session.scalars(delete(Job).where(Job.id == job["id"]).returning(Job)).all()
            assert len(gone) == 1
            tallies.add(session, [(j.kind, j.status, j.duration_seconds) for j in gone])
        assert stack.client.call("GET", f"/api/v1/jobs/{job['id']}").status == 404
        cache.delete(metrics.CACHE_KEY)
        after = scrape(base)
        for name, labels in names:
            assert value(after, name, **labels) >= value(before, name, **labels) >= 1, name
    db.engine.dispose()
