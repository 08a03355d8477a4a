"""Quotas as a hostile key meets them: a priority over the ceiling and more active jobs than
the key may have are refused with a problem naming the limit, and nothing is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from api import create_app
from api.auth import create_key
from shared import jobs
from shared.config import Settings
from shared.db import Database
from shared.models import ApiKey, Job, JobStatus
from tests.support import job_count

LIMIT = 3


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(dataclasses.replace(settings, max_active_jobs_per_key=LIMIT))
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    yield app
    app.extensions["ladder"].db.engine.dispose()


def stairs(n: int = 3, **extra: Any) -> dict[str, Any]:
    return {"kind": "stairs", "params": {"n": n}, **extra}


def test_a_priority_over_the_ceiling_is_refused_naming_it(
    client: FlaskClient, user: dict[str, str], admin: dict[str, str], db: Database
) -> None:
    ceiling = Settings().max_priority
    assert (
        client.post("/api/v1/jobs", json=stairs(priority=ceiling), headers=user).status_code == 202
    )
    r = client.post("/api/v1/jobs", json=stairs(priority=ceiling + 1), headers=user)
    assert r.status_code == 422
    assert r.content_type == "application/problem+json"
    [error] = r.get_json()["errors"]
    assert error["field"] == "priority"
    assert f"at most {ceiling}" in error["message"] and "LADDER_MAX_PRIORITY" in error["message"]
    assert job_count(db) == 1
    # Admins run the service and may jump its queue.
    assert client.post("/api/v1/jobs", json=stairs(priority=9), headers=admin).status_code == 202


def test_a_key_may_have_a_ceiling_of_its_own(client: FlaskClient, db: Database) -> None:
    token = create_key(db, "low")
    with db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.name == "low").values(max_priority=2))
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/jobs", json=stairs(priority=2), headers=headers).status_code == 202
    r = client.post("/api/v1/jobs", json=stairs(priority=3), headers=headers)
    assert r.status_code == 422 and "at most 2" in r.get_json()["errors"][0]["message"]
    batch = {"jobs": [stairs(priority=1), stairs(priority=3)]}
    r = client.post("/api/v1/jobs/batch", json=batch, headers=headers)
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "jobs[1].priority"
    assert job_count(db) == 1


def test_a_key_past_its_active_jobs_gets_429_and_others_go_on(
    client: FlaskClient, user: dict[str, str], other_user: dict[str, str], db: Database
) -> None:
    made = [client.post("/api/v1/jobs", json=stairs(n), headers=user) for n in range(LIMIT)]
    assert [r.status_code for r in made] == [202] * LIMIT
    r = client.post("/api/v1/jobs", json=stairs(), headers=user)
    assert r.status_code == 429
    assert r.content_type == "application/problem+json"
    assert "LADDER_MAX_ACTIVE_JOBS_PER_KEY" in r.get_json()["detail"]
    assert f"at most {LIMIT}" in r.get_json()["detail"]
    assert int(r.headers["Retry-After"]) > 0
    assert job_count(db) == LIMIT
    # One key's backlog does not stop another's.
    assert client.post("/api/v1/jobs", json=stairs(), headers=other_user).status_code == 202
    # A repeated Idempotency-Key makes nothing, so it still answers with its job.
    with db.session() as s:
        s.execute(update(Job).values(status=JobStatus.SUCCEEDED))
    once = {"Idempotency-Key": "once", **user}
    first = client.post("/api/v1/jobs", json=stairs(), headers=once)
    assert first.status_code == 202
    for n in range(LIMIT - 1):
        assert client.post("/api/v1/jobs", json=stairs(n), headers=user).status_code == 202
    again = client.post("/api/v1/jobs", json=stairs(), headers=once)
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]
    # Ended jobs do not count: running ones do.
    with db.session() as s:
        s.execute(update(Job).where(Job.status == JobStatus.QUEUED).values(status="running"))
    assert client.post("/api/v1/jobs", json=stairs(), headers=user).status_code == 429


def test_a_batch_counts_every_job_and_is_made_whole_or_not_at_all(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    assert client.post("/api/v1/jobs", json=stairs(), headers=user).status_code == 202
    r = client.post("/api/v1/jobs/batch", json={"jobs": [stairs()] * LIMIT}, headers=user)
    assert r.status_code == 429 and job_count(db) == 1
    r = client.post("/api/v1/jobs/batch", json={"jobs": [stairs()] * (LIMIT + 1)}, headers=user)
    assert r.status_code == 422  # can never fit: not worth retrying
    assert r.get_json()["errors"][0]["field"] == "jobs"
    r = client.post("/api/v1/jobs/batch", json={"jobs": [stairs()] * (LIMIT - 1)}, headers=user)
    assert r.status_code == 202 and job_count(db) == LIMIT


def test_a_key_may_have_a_quota_of_its_own(client: FlaskClient, db: Database) -> None:
    token = create_key(db, "bulk")
    with db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.name == "bulk").values(max_active_jobs=LIMIT + 2))
    headers = {"Authorization": f"Bearer {token}"}
    codes = [client.post("/api/v1/jobs", json=stairs(), headers=headers).status_code
             for _ in range(LIMIT + 3)]  # fmt: skip
    assert codes == [202] * (LIMIT + 2) + [429]


def test_a_replay_racing_its_first_request_at_the_quota_gets_the_job(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay looked for its key before the first request committed; the first request's
    job then filled the quota. The replay's answer is that job, not a 429."""
    create_key(db, "racer")
    with db.session() as s:
        owner = s.scalars(select(ApiKey.id).where(ApiKey.name == "racer")).one()
    new = jobs.NewJob(owner, "stairs", {"n": 3}, 5, "auto", "cpu")
    first, _ = jobs.create(db, new, {"n": 3}, "same", max_active=1)
    looked = jobs._by_idempotency_key
    calls: list[object] = []

    def too_early(*args: Any) -> Any:
        calls.append(args)
        return None if len(calls) == 1 else looked(*args)

    monkeypatch.setattr(jobs, "_by_idempotency_key", too_early)
    again, created = jobs.create(db, new, {"n": 3}, "same", max_active=1)
    assert (again.id, created) == (first.id, False) and job_count(db) == 1
