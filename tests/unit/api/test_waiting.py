"""Requests that wait on a job end cleanly: a chat's client leaving cancels its job, a stale
`status` entry does not end a wait, and a malformed limit stops the app at its start."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from shared import jobs, streams
from shared.config import Settings
from shared.db import Database
from shared.models import JobStatus


def test_a_streamed_chat_whose_client_leaves_cancels_its_job(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = client.post("/v1/chat/completions", json=body, headers=user, buffered=False)
    assert response.status_code == 200
    assert b"chat.completion.chunk" in next(iter(response.response))
    response.close()  # the client goes away before its job has run
    job = jobs.find(db, response.headers["X-Ladder-Job"])
    assert job is not None and job.status == JobStatus.CANCELLED


def test_an_end_the_row_does_not_confirm_does_not_end_a_wait(
    app: Flask, client: FlaskClient, user: dict[str, str]
) -> None:
    job = client.post(
        "/api/v1/jobs", json={"kind": "stairs", "params": {"n": 3}}, headers=user
    ).get_json()
    # A stale entry (a retried job's old end, say): the row, still queued, has the last word.
    streams.publish_status(app.extensions["ladder"].redis, job["id"], JobStatus.FAILED)
    started = time.monotonic()
    r = client.get(f"/api/v1/jobs/{job['id']}?wait=1", headers=user)
    assert r.get_json()["status"] == "queued"
    assert time.monotonic() - started >= 1


def test_a_malformed_limit_stops_the_app_at_its_start(settings: Settings) -> None:
    bad = Settings.from_env(
        {"DATABASE_URL": settings.database_url, "LADDER_STAIRS_MAX_N_FIB": "1e7"}
    )
    with pytest.raises(ValueError, match="LADDER_STAIRS_"):
        create_app(bad)
