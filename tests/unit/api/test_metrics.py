"""`/metrics`: its token, its cache in Redis, and counters that never go down when jobs are
purged or retried (the tallies' convention in api.metrics)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import fakeredis
import pytest
from flask import Flask
from sqlalchemy import delete, update

from api import create_app, metrics
from shared import tallies
from shared.config import Settings
from shared.db import Database
from shared.models import Job, JobTally
from tests.support import add_job

TOKEN = "metrics-token-of-32-characters-at-least"


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def scrape(db: Database) -> str:
    return metrics.render(db, fakeredis.FakeRedis()).decode()


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def app_on(settings: Settings, server: fakeredis.FakeServer) -> Flask:
    app = create_app(settings)
    app.extensions["ladder"].redis = fakeredis.FakeRedis(server=server)
    return app


@pytest.fixture
def apps(settings: Settings, server: fakeredis.FakeServer) -> Iterator[list[Flask]]:
    """Two API processes' worth of apps on one Redis, wanting the metrics token."""
    guarded = dataclasses.replace(settings, metrics_token=TOKEN, auth_failures_per_minute=3)
    made = [app_on(guarded, server) for _ in range(2)]
    yield made
    for app in made:
        app.extensions["ladder"].db.engine.dispose()


def test_without_a_metrics_token_metrics_are_open(settings: Settings) -> None:
    app = app_on(settings, fakeredis.FakeServer())
    assert app.test_client().get("/metrics").status_code == 200
    app.extensions["ladder"].db.engine.dispose()


def test_with_a_metrics_token_a_scrape_needs_it(apps: list[Flask]) -> None:
    client = apps[0].test_client()
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]:
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.mimetype == "application/problem+json"
        assert "LADDER_METRICS_TOKEN" in r.get_json()["detail"]
        assert "ladder_jobs" not in r.text
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and "ladder_workers" in ok.text
    # Wrong tokens are guesses like any other: past the limit (3) even the right one waits.
    for _ in range(3):
        client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 429


def test_scrapes_within_the_cache_time_read_one_rendering_from_redis(
    apps: list[Flask], db: Database, server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = []
    scan = metrics._rows
    monkeypatch.setattr(metrics, "_rows", lambda d: scans.append(1) or scan(d))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = apps[0].test_client().get("/metrics", headers=auth).text
    add_job(db, status="succeeded", duration_seconds=0.2)
    # Another process, a new job: the same text, and no second scan of `jobs`.
    assert apps[1].test_client().get("/metrics", headers=auth).text == first
    assert len(scans) == 1
    assert 0 < fakeredis.FakeRedis(server=server).ttl(metrics.CACHE_KEY) <= metrics.CACHE_SECONDS
    fakeredis.FakeRedis(server=server).delete(metrics.CACHE_KEY)  # as when it expires
    fresh = apps[1].test_client().get("/metrics", headers=auth).text
    assert fresh != first and len(scans) == 2
    assert value(fresh, "ladder_jobs_finished_total", kind="stairs", status="succeeded") == 1


def test_a_scrape_waits_for_another_process_rendering_rather_than_scan_too(
    apps: list[Flask], server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = fakeredis.FakeRedis(server=server)
    redis.set(metrics.RENDERING_KEY, b"1", ex=metrics.CACHE_SECONDS)

    def rendered_meanwhile(seconds: float) -> None:
        redis.set(metrics.CACHE_KEY, b"# rendered by another process\n")

    monkeypatch.setattr(metrics.time, "sleep", rendered_meanwhile)
    monkeypatch.setattr(metrics, "render", lambda *_: pytest.fail("rendered twice"))
    r = apps[0].test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.text == "# rendered by another process\n"


def test_counters_do_not_go_down_when_jobs_are_purged_into_the_tallies(db: Database) -> None:
    for duration in (0.03, 2.0, 400.0):
        add_job(db, status="succeeded", duration_seconds=duration)
    add_job(db, status="failed", duration_seconds=1.0, kind="attention")
    add_job(db, status="queued")
    before = scrape(db)
    # The purge's move: rows out of `jobs`, into their tallies, in one transaction.
    with db.session() as session:
        gone = session.scalars(delete(Job).where(Job.status != "queued").returning(Job)).all()
        tallies.add(session, [(j.kind, j.status, j.duration_seconds) for j in gone])
    after = scrape(db)
    assert after == before
    assert value(after, "ladder_jobs_submitted_total", kind="stairs") == 4
    assert value(after, "ladder_jobs_finished_total", kind="stairs", status="succeeded") == 3
    assert value(after, "ladder_job_duration_seconds_bucket", kind="stairs", le="1") == 1
    assert value(after, "ladder_job_duration_seconds_bucket", kind="stairs", le="+Inf") == 3
    assert value(after, "ladder_job_duration_seconds_sum", kind="stairs") == pytest.approx(402.03)
    # A later job of the same kind adds to the purged ones.
    add_job(db, status="succeeded", duration_seconds=0.5)
    later = scrape(db)
    assert value(later, "ladder_jobs_finished_total", kind="stairs", status="succeeded") == 4
    assert value(later, "ladder_job_duration_seconds_bucket", kind="stairs", le="1") == 2


def test_a_retried_job_counts_its_first_ending_but_is_submitted_once(db: Database) -> None:
    job_id = add_job(db, status="failed", duration_seconds=3.0)
    assert tallies.RETRIED.startswith(metrics.RETRIED_PREFIX)
    # The retry's move: the row back to queued, its ending into the tallies.
    with db.session() as session:
        tallies.add(session, [("stairs", tallies.RETRIED, 3.0)])
        session.execute(
            update(Job).where(Job.id == job_id).values(status="queued", duration_seconds=None)
        )
    text = scrape(db)
    assert value(text, "ladder_jobs_submitted_total", kind="stairs") == 1
    assert value(text, "ladder_jobs_finished_total", kind="stairs", status="failed") == 1
    assert value(text, "ladder_job_duration_seconds_count", kind="stairs") == 1
    # It ends again: a second ending, still one submission.
    with db.session() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(status="succeeded", duration_seconds=0.5)
        )
    text = scrape(db)
    assert value(text, "ladder_jobs_submitted_total", kind="stairs") == 1
    assert value(text, "ladder_jobs_finished_total", kind="stairs", status="failed") == 1
    assert value(text, "ladder_jobs_finished_total", kind="stairs", status="succeeded") == 1
    assert value(text, "ladder_job_duration_seconds_count", kind="stairs") == 2
    with db.session() as session:
        assert session.get(JobTally, ("stairs", tallies.RETRIED)) is not None
