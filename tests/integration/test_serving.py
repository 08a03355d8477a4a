"""The API under gunicorn's gevent worker, as `make run` serves it, with many clients waiting:
followers cost no thread, a key's streams are limited, and a client that hangs up is noticed."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from api.auth import create_key
from scripts.followers import Followers
from shared.db import Database
from tests.processes import ApiServer, Stack
from tests.support import ADMIN_TOKEN, Client, wait_for


@pytest.fixture
def served(stack: Stack, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    """The stack's settings served by gunicorn; `@pytest.mark.parametrize("served", [env],
    indirect=True)` lowers a limit."""
    server = ApiServer(stack.settings, tmp_path / "api.log", env=getattr(request, "param", {}))
    server.start()
    yield server
    server.kill()


def address(server: ApiServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "", parts.port or 80


def queue(client: Client, count: int) -> list[str]:
    reply = client.call("POST", "/api/v1/jobs/batch",
                        {"jobs": [{"kind": "stairs", "params": {"n": 20}}] * count})  # fmt: skip
    assert reply.status == 202, reply.body
    return [job["id"] for job in reply.json()["items"]]


@pytest.mark.parametrize("served", [{"LADDER_MAX_STREAMS_PER_KEY": "250"}], indirect=True)
def test_200_followers_leave_the_service_answering_and_each_sees_its_job_end(
    stack: Stack, served: ApiServer
) -> None:
    client = Client(served.url, ADMIN_TOKEN)
    with stack.worker.paused():  # the jobs wait, and so does every follower
        ids = queue(client, 200)
        followers = Followers(*address(served), [(job_id, ADMIN_TOKEN) for job_id in ids])
        try:
            assert followers.wait("opened", 60), f"{followers.count('opened')} of 200 opened"
            for _ in range(20):
                started = time.monotonic()
                assert client.call("GET", "/healthz").status == 200
                assert time.monotonic() - started < 1
            started = time.monotonic()
            extra = client.submit({"n": 5})
            assert time.monotonic() - started < 2
        finally:
            followers.pump(0)
    try:
        assert followers.wait("ended", 120), f"{followers.count('ended')} of 200 saw the end"
        for follower in followers.all:
            assert b'"status": "succeeded"' in follower.received, follower.job_id
    finally:
        followers.close()
    assert client.wait(extra["id"])["status"] == "succeeded"


@pytest.mark.parametrize("served", [{"LADDER_MAX_STREAMS_PER_KEY": "3"}], indirect=True)
def test_past_its_stream_limit_a_key_gets_429_until_a_client_hangs_up(
    stack: Stack, served: ApiServer
) -> None:
    # A key of its own: streams that other tests left to lapse count against theirs, not this.
    db = Database(stack.settings.database_url)
    token = create_key(db, "three streams")
    db.engine.dispose()
    client = Client(served.url, token)
    with stack.worker.paused():
        ids = queue(client, 4)
        followers = Followers(*address(served), [(job_id, token) for job_id in ids[:3]])
        try:
            assert followers.wait("opened", 30), [f.received[:200] for f in followers.all]
            refused = client.call("GET", f"/api/v1/jobs/{ids[3]}/events")
            assert refused.status == 429
            assert "LADDER_MAX_STREAMS_PER_KEY" in refused.json()["detail"]
            assert refused.headers["Content-Type"] == "application/problem+json"
            assert client.call("GET", f"/api/v1/jobs/{ids[3]}?wait=1").status == 429
            followers.all[0].sock.close()  # a client goes away: its slot is free at once
            wait_for(
                lambda: client.call("GET", f"/api/v1/jobs/{ids[3]}?wait=1").status == 200,
                "the slot of the client that hung up",
                10,
            )
        finally:
            followers.close()


def test_a_client_that_hangs_up_on_a_streamed_chat_cancels_its_job(
    stack: Stack, served: ApiServer
) -> None:
    client = Client(served.url, ADMIN_TOKEN)
    body = {"messages": [{"role": "user", "content": "hello"}], "stream": True,
            "max_tokens": 64}  # fmt: skip
    with stack.generator.paused():  # queued, so the job cannot end before the client leaves
        conn = http.client.HTTPConnection(*address(served), timeout=30)
        conn.request("POST", "/v1/chat/completions", json.dumps(body),
                     {"Authorization": f"Bearer {ADMIN_TOKEN}",
                      "Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        assert response.status == 200
        job_id = response.headers["X-Ladder-Job"]
        assert b"chat.completion.chunk" in response.fp.readline() + response.fp.readline()
        assert client.job(job_id)["status"] in ("queued", "running")
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        wait_for(lambda: client.job(job_id)["status"] == "cancelled", "the job cancelled", 10)
    assert client.job(job_id)["error"]["code"] == "cancelled"
