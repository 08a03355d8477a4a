"""A whole Ladder of the test's own, to break: a private PostgreSQL it may stop, a private Redis
it may restart empty, the API under gunicorn and Celery workers it may kill."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shared.config import Settings
from shared.db import Database
from shared.models import Job
from shared.schema import upgrade
from tests.conftest import need
from tests.integration.http import Client, Reply
from tests.processes import (
    LOCAL,
    ApiServer,
    Host,
    PostgresServer,
    RedisServer,
    Worker,
    start_worker,
)

ADMIN_TOKEN = "faults-admin-token"
SLOW = list(range(1, 51))
"""Steps 1 to 50: n = 200,000 takes about a second, n = 1,000,000 about seven."""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if not shutil.which("pg_ctl") and not Path("/usr/lib/postgresql/15/bin/pg_ctl").exists():
        need("PostgreSQL server binaries", "initdb and pg_ctl are not installed")
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@dataclass
class Cluster:
    settings: Settings
    tmp: Path
    postgres: PostgresServer
    redis: RedisServer
    api: ApiServer
    client: Client
    db: Database
    workers: list[Worker] = field(default_factory=list)

    def worker(self, name: str, concurrency: int = 1, host: Host = LOCAL, **env: str) -> Worker:
        log = self.tmp / f"worker-{name}.log"
        started = start_worker(self.settings, log, name, concurrency, host, **env)
        self.workers.append(started)
        return started

    def submit_many(self, params: list[dict[str, Any]], clients: int = 16) -> list[Reply]:
        """Submit jobs from many threads at once, as many clients would."""
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(self._submit, params))

    def _submit(self, params: dict[str, Any]) -> Reply:
        return self.client.call("POST", "/api/v1/jobs", {"kind": "stairs", "params": params})

    def rows(self, ids: list[str] | None = None) -> dict[str, Job]:
        with self.db.session() as session:
            query = select(Job)
            if ids is not None:
                query = query.where(Job.id.in_(ids))
            return {job.id: job for job in session.scalars(query)}

    def statuses(self) -> Counter[str]:
        return Counter(str(job.status) for job in self.rows().values())

    def wait_until_ended(self, count: int, timeout: float) -> dict[str, Job]:
        """Wait until `count` jobs have ended; the rows."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            ended = [j for j in rows.values() if j.status in {"succeeded", "failed", "cancelled"}]
            if len(ended) >= count:
                return rows
            assert time.monotonic() < deadline, f"after {timeout} s: {self.statuses()}"
            time.sleep(0.5)

    def running_on(self, worker: Worker) -> set[str]:
        prefix = f"{worker.name}@"
        return {
            job.id
            for job in self.rows().values()
            if job.status == "running" and (job.worker or "").startswith(prefix)
        }

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.tmp.glob("*.log"))


@pytest.fixture
def cluster(postgres: PostgresServer, tmp_path: Path) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path / "redis.log")
    redis.start()
    database_url = postgres.create_database(f"faults_{uuid.uuid4().hex[:8]}")
    upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        broker_url=redis.url,
        admin_token=ADMIN_TOKEN,
        models_dir=tmp_path / "models",
    )
    api = ApiServer(settings, tmp_path / "api.log")
    db = Database(database_url)
    built = Cluster(settings, tmp_path, postgres, redis, api, Client(api.url, ADMIN_TOKEN), db)
    try:
        api.start()
        yield built
    finally:
        for worker in built.workers:
            worker.kill()
        api.kill()
        redis.kill()
        db.engine.dispose()


def in_background(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
