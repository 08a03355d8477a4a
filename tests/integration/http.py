"""A small HTTP client for the tests: real sockets, JSON in and out, no library in between."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
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
