"""What the tests share, in one place: a missing service, waiting on something observable, an
HTTP client, the jobs they submit, rows written as the API would, and a load driver.

Test modules import from here (and from tests.processes for real processes), never from one
another or from a conftest; nothing here or in a test imports bench/.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
import uuid
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
