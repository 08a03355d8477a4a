"""The pieces the service benchmarks share: Ladder (API, worker, rows) and bare Celery, started
the same way, on the same Redis (bench/serving.py, load.py and capacity.py use them)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen

import redis
from sqlalchemy import delete, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BIN,
    drive,
    start,
    stop,
    wait_for_line,
)
from scripts import processes
from shared.db import Database
from shared.models import Job, JobStatus
from shared.schema import upgrade

N = int(os.environ.get("BENCH_JOBS", "2000"))
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")
TOKEN = "bench-token-of-32-characters-at-least"
CLIENTS = 8
PORT = 8765


def submit_all() -> float:
    """POST N jobs from CLIENTS threads, each on one keep-alive connection; returns seconds."""
    seen = drive(Ladder.url, [TOKEN] * CLIENTS, N, params={"n": 30})
    assert dict(seen.statuses) == {202: N}, seen.statuses
    return seen.seconds


def wait_done(done: Callable[[], int], count: int = N, seconds: float = 900) -> None:
    """Poll `done` until it reaches `count`."""
    deadline = time.monotonic() + seconds
    while (finished := done()) < count:
        assert time.monotonic() < deadline, f"only {finished} of {count} finished"
        time.sleep(0.02)


class Ladder:
    url = f"http://127.0.0.1:{PORT}"

    def __init__(
        self, tmp: Path, database_url: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.tmp = tmp
        self.database_url = database_url or f"sqlite:///{tmp}/bench.db"
        upgrade(self.database_url)
        self.db = Database(self.database_url)
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "BROKER_URL": BROKER_URL,
            "LADDER_ADMIN_TOKEN": TOKEN,
            "LADDER_SECRET_KEY": "bench-secret-key-of-32-characters-at-least",
            # The bench queues BENCH_JOBS (2,000) at once on one key: past the default quota.
            "LADDER_MAX_ACTIVE_JOBS_PER_KEY": "0",
            **(env or {}),
        }
        self.api = start(processes.api(bind=f"127.0.0.1:{PORT}"), self.env, tmp / "api.log")
        wait_for_line(tmp / "api.log", "Booting worker")

    def worker(self, concurrency: int | None = None, queue: str = "cpu") -> Popen[bytes]:
        """A worker of `queue`: one process a core for `cpu` unless told, a batch's worth of
        threads for `cpu.generate` (scripts/processes.py's defaults)."""
        log = self.tmp / "worker.log"
        argv = processes.worker(queue, concurrency=concurrency, extra=processes.QUICK_START)
        process = start(argv, self.env, log)
        wait_for_line(log, " ready.")
        return process

    def ended(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).where(Job.finished_at.is_not(None))) or 0)

    def succeeded(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).where(Job.status == JobStatus.SUCCEEDED)) or 0)

    def clear(self) -> None:
        with self.db.session() as s:
            s.execute(delete(Job))

    def close(self) -> None:
        stop(self.api)
        self.db.engine.dispose()


class Bare:
    def __init__(self, tmp: Path) -> None:
        from bench.bare_celery import COUNTER, noop

        self.tmp, self.counter_key, self.noop = tmp, COUNTER, noop
        self.counter = redis.Redis.from_url(BROKER_URL)
        self.counter.delete(COUNTER)

    def worker(self, pool: str = "solo") -> Popen[bytes]:
        log = self.tmp / "bare.log"
        process = start(
            [
                str(BIN / "celery"),
                "-A",
                "bench.bare_celery",
                "worker",
                *(
                    ["-P", "solo"]
                    if pool == "solo"
                    else ["-P", "prefork", "-c", str(os.cpu_count())]
                ),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            {**os.environ, "BENCH_BROKER_URL": BROKER_URL},
            log,
        )
        wait_for_line(log, " ready.")
        return process

    def done(self) -> int:
        return int(self.counter.get(self.counter_key) or 0)

    def send_all(self) -> float:
        cpu = time.process_time()
        for _ in range(N):
            self.noop.delay()
        return (time.process_time() - cpu) / N

    def end_to_end(self) -> dict[str, float]:
        self.counter.delete(self.counter_key)
        worker = self.worker()
        started = time.perf_counter()
        self.send_all()
        wait_done(self.done)
        stop(worker)
        return {"jobs_per_s": N / (time.perf_counter() - started)}
