"""GET /api/v1/jobs/{id}?wait=N answers when the job ends, or after N seconds; and the per-key
limit on requests that wait."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from shared import jobs, streams
from shared.config import Settings
from shared.db import Database
from shared.models import JobStatus
from tests.support import wait_for


def submit(client: FlaskClient, headers: dict[str, str]) -> Any:
    r = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 5}}, headers=headers)
    return r.get_json()


@pytest.mark.parametrize("wait", ["61", "-1", "x", "²", "1.5", "9" * 5000])
def test_a_wait_out_of_range_is_a_422_naming_it(
    client: FlaskClient, user: dict[str, str], wait: str
) -> None:
    job = submit(client, user)
    r = client.get(f"/api/v1/jobs/{job['id']}?wait={wait}", headers=user)
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["field"] == "wait" and "60" in r.get_json()["detail"]


def test_a_job_that_ends_during_the_wait_is_answered_at_once(
    app: Flask, client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    job = submit(client, user)
    redis = app.extensions["ladder"].redis

    def end_it() -> None:
        time.sleep(0.3)
        jobs.cancel(db, job["id"])
        streams.publish_status(redis, job["id"], JobStatus.CANCELLED)

    threading.Thread(target=end_it).start()
    started = time.monotonic()
    r = client.get(f"/api/v1/jobs/{job['id']}?wait=30", headers=user)
    assert r.get_json()["status"] == "cancelled"
    assert time.monotonic() - started < 5  # not the 30 s it could have waited


def test_a_job_that_does_not_end_is_answered_after_the_wait(
    client: FlaskClient, user: dict[str, str]
) -> None:
    job = submit(client, user)
    started = time.monotonic()
    r = client.get(f"/api/v1/jobs/{job['id']}?wait=1", headers=user)
    assert r.status_code == 200 and r.get_json()["status"] == "queued"
    assert 1 <= time.monotonic() - started < 5


def test_a_finished_job_is_answered_without_waiting(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    job = submit(client, user)
    jobs.cancel(db, job["id"])
    started = time.monotonic()
    assert client.get(f"/api/v1/jobs/{job['id']}?wait=60", headers=user).status_code == 200
    assert time.monotonic() - started < 1


def test_past_its_limit_a_key_cannot_open_another_wait(
    settings: Settings, user: dict[str, str]
) -> None:
    app = create_app(dataclasses.replace(settings, max_streams_per_key=1))
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    client = app.test_client()
    job = submit(client, user)
    waiting = threading.Thread(
        target=lambda: app.test_client().get(f"/api/v1/jobs/{job['id']}?wait=2", headers=user)
    )
    waiting.start()
    redis = app.extensions["ladder"].redis
    wait_for(lambda: any(redis.zcard(k) for k in redis.scan_iter("ladder:waiting:*")), "a wait")
    for path in ("?wait=1", "/events"):
        r = client.get(f"/api/v1/jobs/{job['id']}{path}", headers=user)
        assert r.status_code == 429, path
        assert "LADDER_MAX_STREAMS_PER_KEY" in r.get_json()["detail"]
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=user).status_code == 200
    waiting.join()
    # Its slot is given back: the next wait goes through.
    assert client.get(f"/api/v1/jobs/{job['id']}?wait=1", headers=user).status_code == 200
    app.extensions["ladder"].db.engine.dispose()


def test_a_long_poll_reads_the_status_stream_which_tokens_leave_alone(
    app: Flask, client: FlaskClient, user: dict[str, str]
) -> None:
    """A client waiting for a generation's end is not woken by each of its tokens."""
    job = submit(client, user)
    redis = app.extensions["ladder"].redis
    for n in range(50):
        streams.publish(redis, job["id"], "token", {"text": "x", "n": n})
    streams.publish_status(redis, job["id"], JobStatus.RUNNING)
    statuses = streams.read(redis, job["id"], "0", None, statuses=True)
    assert [(e, d) for _, e, d in statuses] == [("status", {"status": "running"})]
    assert len(streams.read(redis, job["id"], "0", None)) == 51
