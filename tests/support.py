"""What the tests share, in one place: a missing service, waiting on something observable, an
HTTP client, the jobs they submit, rows written as the API would, and a load driver.

Test modules import from here (and from tests.processes for real processes), never from one
another or from a conftest; nothing here or in a test imports bench/.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from shared.db import Database
from shared.models import ApiKey, Job
from shared.streams import Redis
from worker.reconciler import PASSES

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ADMIN_TOKEN = "tests-admin-token-of-32-characters-at-least"
"""The admin token of every Ladder the tests start (the API refuses one under 32 characters)."""
SECRET_KEY = "tests-secret-key-of-32-characters-at-least"
"""The session key of every Ladder the tests start (LADDER_SECRET_KEY)."""

SLOW = list(range(1, 51))
"""Steps 1 to 50: n = 200,000 takes about a second, n = 1,000,000 five to seven."""
LONG = {"n": 1_000_000, "steps": SLOW}
"""A stairs job of several seconds: long enough to be seen running, cancelled or killed."""


def need(service: str, reason: str) -> None:
    """A missing service skips the test here, but fails it in CI, where everything must run."""
    message = f"{service} is not available: {reason}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def wait_for(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Poll `check` until it holds; TimeoutError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not so after {seconds:.0f} s")
        time.sleep(0.1)


def explorer_weights(data: dict[str, Any]) -> Any:
    """An explorer page's weights as a (pairs, queries, keys) float16 array, decoded as the
    format in shared/explorer says (the browser does the same)."""
    import numpy as np

    weights = data["weights"]
    planes = np.frombuffer(zlib.decompress(base64.b64decode(weights["data"])), np.uint8)
    low, high = np.split(planes, 2)
    values = (low.astype(np.uint16) | (high.astype(np.uint16) << 8)).view("<f2")
    return values.reshape(len(weights["pairs"]), weights["queries"], weights["keys"])


def reconciler_passes(client: Redis) -> int:
    """How many reconciler passes the workers on this Redis have run."""
    return int(client.get(PASSES) or 0)


def wait_for_reconciler_passes(client: Redis, passes: int = 2, seconds: float = 60) -> None:
    """Wait until `passes` whole reconciler passes have begun and ended from now on.

    A pass already under way when this is called may have read the database before now, so it
    does not count: the counter must move `passes` + 1 times."""
    start = reconciler_passes(client)
    wait_for(
        lambda: reconciler_passes(client) >= start + passes + 1,
        f"{passes} reconciler passes",
        seconds,
    )


def job_count(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def add_job(db: Database, **values: Any) -> str:
    """Commit a job row as the API would, stairs with n = 7 unless `values` say otherwise;
    `values` set any column (status, attempts, started_at, …). Its owner is the admin key, or
    a key made for it. Returns its id."""
    job_id = str(uuid.uuid4())
    with db.session() as session:
        owner = session.scalars(
            select(ApiKey.id).order_by(ApiKey.is_admin.desc(), ApiKey.id)
        ).first()
        if owner is None:
            key = ApiKey(name="tests", token_hash=uuid.uuid4().hex * 2)
            session.add(key)
            session.flush()
            owner = key.id
        row: dict[str, Any] = {
            "kind": "stairs",
            "params": {"n": 7, "steps": [1, 2], "modulus": None},
            "priority": 5,
            "device": "auto",
            "queue": "cpu",
            **values,
        }
        session.add(Job(id=job_id, api_key_id=owner, **row))
    return job_id


def oracle(n: int, steps: list[int], modulus: int | None = None) -> int:
    """Ways to climb n stairs by the O(n·K) dynamic programme, straight from the recurrence."""
    counts = [1] + [0] * n
    for i in range(1, n + 1):
        counts[i] = sum(counts[i - s] for s in steps if s <= i)
    return counts[n] if modulus is None else counts[n] % modulus


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """A small HTTP client: real sockets, JSON in and out, no library in between."""

    base: str
    token: str | None = None

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Reply:
        request = urllib.request.Request(self.base + path, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, data, timeout=30) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def submit(self, params: dict[str, Any], kind: str = "stairs", **extra: Any) -> dict[str, Any]:
        reply = self.call("POST", "/api/v1/jobs", {"kind": kind, "params": params, **extra})
        assert reply.status == 202, reply.body
        job: dict[str, Any] = reply.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        reply = self.call("GET", f"/api/v1/jobs/{job_id}")
        assert reply.status == 200, reply.body
        job: dict[str, Any] = reply.json()
        return job

    def wait(self, job_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        """Poll the job until its status is one of `statuses` (default: any end state)."""
        wanted = set(statuses or ("succeeded", "failed", "cancelled"))
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in wanted:
                return job
            assert time.monotonic() < deadline, f"job {job_id} is still {job['status']}"
            time.sleep(0.05)


@dataclass
class Drive:
    """What a burst of submissions got back."""

    statuses: Counter[int] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)


def drive(base_url: str, tokens: list[str], jobs: int) -> Drive:
    """POST `jobs` stairs jobs (n < 500) from one thread per token, each on one keep-alive
    connection, as many clients at once would. (bench/ keeps its own, timed driver.)"""
    address = urlsplit(base_url)

    def client(index: int) -> Drive:
        seen = Drive()  # each thread its own: a shared Counter's += can lose a count
        headers = {"Authorization": f"Bearer {tokens[index]}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
        for n in range(index, jobs, len(tokens)):
            body = json.dumps({"kind": "stairs", "params": {"n": n % 500}})
            conn.request("POST", "/api/v1/jobs", body, headers)
            response = conn.getresponse()
            reply = response.read()
            seen.statuses[response.status] += 1
            if response.status == 202:
                seen.accepted.append(json.loads(reply)["id"])
        conn.close()
        return seen

    total = Drive()
    with ThreadPoolExecutor(len(tokens)) as pool:
        for seen in pool.map(client, range(len(tokens))):
            total.statuses.update(seen.statuses)
            total.accepted.extend(seen.accepted)
    return total


def early_in_a_minute(needed: float = 20) -> None:
    """Wait, if need be, until at least `needed` seconds of this calendar minute are left: the
    per-minute limits (api.ratelimit) start counting again at each minute's turn."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.1)


@dataclass
class Delivery:
    """A request a Receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A webhook receiver on 127.0.0.1, on a thread: it records each request and answers with
    the next of `answers` (HTTP status, headers), the last one again once they run out."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]] | None = None) -> None:
        import http.server
        import threading

        self.answers = list(answers or [(200, {})])
        self.got: list[Delivery] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.got.append(Delivery(self.path, dict(self.headers), body))
                answers = receiver.answers
                status, headers = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def check_webhooks_migration_round_trip(url: str) -> None:
    """A database at 0004 holding a key, a job and an artifact, upgraded to head, downgraded to
    0004 and upgraded again: every row survives each step, and the release before webhooks can
    make keys at head. On SQLite each step changes the tables in place, never by a rebuild,
    which the foreign keys pointing at `api_keys` and `jobs` would fail (or cascade)."""
    from alembic import command
    from sqlalchemy import inspect, text

    from shared.db import make_engine
    from shared.schema import alembic_config, upgrade

    config = alembic_config(url)
    command.upgrade(config, "0004")
    engine = make_engine(url)
    key_row = ("INSERT INTO api_keys (name, token_hash, is_admin, created_at) "
               "VALUES (:name, :hash, :admin, CURRENT_TIMESTAMP)")  # fmt: skip
    with engine.begin() as connection:
        connection.execute(text(key_row), {"name": "old", "hash": "a" * 64, "admin": False})
        key_id = connection.execute(text("SELECT id FROM api_keys")).scalar_one()
        connection.execute(
            text("INSERT INTO jobs (id, api_key_id, kind, status, params, priority, device, "
                 "queue, attempts, progress, created_at) VALUES (:id, :key, 'stairs', "
                 "'succeeded', '{\"n\": 5}', 0, 'cpu', 'cpu', 1, 1.0, CURRENT_TIMESTAMP)"),
            {"id": "00000000-0000-0000-0000-000000000001", "key": key_id},
        )  # fmt: skip
        connection.execute(
            text("INSERT INTO artifacts (job_id, name, content_type, size, data) "
                 "VALUES (:job, 'result.json', 'application/json', 2, :data)"),
            {"job": "00000000-0000-0000-0000-000000000001", "data": b"{}"},
        )  # fmt: skip

    def rows() -> list[Any]:
        with engine.connect() as connection:
            return [
                connection.execute(text(query)).all()
                for query in (
                    "SELECT id, name, token_hash FROM api_keys WHERE name = 'old'",
                    "SELECT id, api_key_id, status FROM jobs",
                    "SELECT job_id, name, data FROM artifacts",
                )
            ]

    def columns(table: str) -> set[str]:
        return {column["name"] for column in inspect(engine).get_columns(table)}

    before = rows()
    assert [len(table) for table in before] == [1, 1, 1]
    try:
        for _ in range(2):
            upgrade(url)
            assert rows() == before
            assert "callback_url" in columns("jobs")
            with engine.begin() as connection:
                secrets = connection.execute(text("SELECT webhook_secret FROM api_keys")).all()
                assert all(str(secret).startswith("whsec_") for (secret,) in secrets)
                # The release before webhooks makes keys knowing nothing of the secret.
                values = {"name": "older-release", "hash": "b" * 64, "admin": False}
                connection.execute(text(key_row), values)
                connection.execute(
                    text("INSERT INTO webhook_deliveries (job_id, url, body, state, created_at, "
                         "attempts) SELECT id, 'https://hooks.example.com/', '{}', 'pending', "
                         "CURRENT_TIMESTAMP, '[]' FROM jobs"),
                )  # fmt: skip
            command.downgrade(config, "0004")
            assert rows() == before
            assert "callback_url" not in columns("jobs")
            assert "webhook_secret" not in columns("api_keys")
            assert "webhook_deliveries" not in inspect(engine).get_table_names()
            with engine.begin() as connection:
                connection.execute(text("DELETE FROM api_keys WHERE name = 'older-release'"))
    finally:
        engine.dispose()
