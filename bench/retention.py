"""Retention: how fast the purge deletes, what a pass with nothing to delete costs, and what
clients reading jobs feel while a purge runs, on SQLite and on PostgreSQL.

The table holds BENCH_RETENTION_ROWS jobs past retention and as many within it, a fifth of
them with a 1 KiB artifact. The purge runs in a process of its own, as in a worker; the API
runs under gunicorn and one client reads kept jobs one after another on a keep-alive
connection, before the purge and while it runs.

Needs this machine's Redis (BENCH_BROKER_URL) and PostgreSQL (BENCH_POSTGRES).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, machine, percentile, scratch_database, start, stop, write_section
from scripts import processes
from scripts.run import answers, free_port
from shared.db import Database
from shared.models import ApiKey, Artifact, Job, utcnow
from shared.schema import upgrade

ROWS = int(os.environ.get("BENCH_RETENTION_ROWS", "100000"))
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")
TOKEN = "bench-token-of-32-characters-at-least"
BATCH = 500
IDLE_SECONDS = 3.0

PURGE = """
import json, sys, time
from shared import streams
from shared.config import Settings
from shared.db import Database
from shared.models import utcnow
from shared.retention import purge
settings = Settings(database_url=sys.argv[1], broker_url=sys.argv[2], purge_batch=int(sys.argv[3]))
db, client = Database(settings.database_url), streams.connect(settings.broker_url)
began = time.time()
deleted = purge(db, client, settings, utcnow())
ended = time.time()
idle = time.perf_counter()
purge(db, client, settings, utcnow())
idle = time.perf_counter() - idle
print(json.dumps({"began": began, "ended": ended, "idle": idle, "deleted": deleted}))
"""


def seed(db: Database, owner: int, now: datetime) -> list[str]:
    """ROWS succeeded jobs 8 to 40 days old (past the default 7 days) and ROWS a day old or
    less, interleaved; the ids of the kept ones."""
    kept = []
    for start_at in range(0, 2 * ROWS, 10_000):
        jobs, files = [], []
        for i in range(start_at, min(start_at + 10_000, 2 * ROWS)):
            job_id = str(uuid.uuid4())
            age = timedelta(days=8 + (i % 32)) if i % 2 else timedelta(seconds=i % 86_400)
            if not i % 2:
                kept.append(job_id)
            jobs.append(
                {"id": job_id, "api_key_id": owner, "kind": "stairs", "status": "succeeded",
                 "params": {"n": i}, "result": {"value": "1", "digits": 1}, "priority": 5,
                 "device": "auto", "queue": "cpu", "created_at": now - age,
                 "finished_at": now - age, "duration_seconds": 0.01}
            )  # fmt: skip
            if i % 10 < 2:
                files.append({"job_id": job_id, "name": "value.txt", "content_type": "text/plain",
                              "size": 1024, "data": b"7" * 1024})  # fmt: skip
        with db.session() as session:
            session.execute(insert(Job), jobs)
            session.execute(insert(Artifact), files)
    return kept


@contextmanager
def api(database_url: str, tmp: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "BROKER_URL": BROKER_URL,
           "LADDER_ADMIN_TOKEN": TOKEN, "WEB_CONCURRENCY": "1", "LADDER_RATE_LIMIT": "0",
           "LADDER_SECRET_KEY": "bench-secret-key-of-32-characters-at-least"}  # fmt: skip
    process = start(processes.api(bind=f"127.0.0.1:{port}"), env, tmp / "api.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not answers(f"{url}/healthz"):
        assert time.monotonic() < deadline, (tmp / "api.log").read_text()[-2000:]
        time.sleep(0.2)
    try:
        yield url
    finally:
        stop(process)


class Reader:
    """One client reading kept jobs in turn; each read's latency, with when it began."""

    def __init__(self, port: int, ids: list[str]) -> None:
        self.port, self.ids = port, ids
        self.reads: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        i = 0
        while not self.stop.is_set():
            began = time.time()
            conn.request("GET", f"/api/v1/jobs/{self.ids[i % len(self.ids)]}", headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            self.reads.append((began, time.time() - began))
            i += 7_919
        conn.close()

    def between(self, start_at: float, end_at: float) -> list[float]:
        return [took for began, took in self.reads if start_at <= began < end_at]


@dataclass
class Purge:
    began: float
    ended: float
    """Wall-clock times (time.time()) of the purge proper, without the process's start."""
    idle: float
    """Seconds of a second pass, with nothing left to delete."""
    deleted: int


def run_purge(database_url: str) -> Purge:
    """A purge in a process of its own, as in a worker, then a pass with nothing to delete."""
    argv = [sys.executable, "-c", PURGE, database_url, BROKER_URL, str(BATCH)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    deleted = sum(found["deleted"].values())
    return Purge(found["began"], found["ended"], found["idle"], deleted)


def measure(database_url: str, tmp: Path) -> dict[str, float]:
    upgrade(database_url)
    db = Database(database_url)
    try:
        with api(database_url, tmp) as url:
            with db.session() as session:
                owner = session.scalar(select(ApiKey.id).where(ApiKey.is_admin))
            assert owner is not None
            started = time.perf_counter()
            kept = seed(db, owner, utcnow())
            seeded = time.perf_counter() - started
            reader = Reader(int(url.rsplit(":", 1)[1]), kept)
            reader.thread.start()
            time.sleep(IDLE_SECONDS)
            purged = run_purge(database_url)
            reader.stop.set()
            reader.thread.join()
            assert purged.deleted == ROWS, purged
            seconds = purged.ended - purged.began
            before = reader.between(purged.began - IDLE_SECONDS, purged.began)
            during = reader.between(purged.began, purged.ended)
            return {
                "seed_s": seeded,
                "purge_s": seconds,
                "rows_per_s": purged.deleted / seconds,
                "idle_pass_ms": 1000 * purged.idle,
                "before_p50": 1000 * percentile(before, 0.5),
                "before_p95": 1000 * percentile(before, 0.95),
                "during_p50": 1000 * percentile(during, 0.5),
                "during_p95": 1000 * percentile(during, 0.95),
                "during_max": 1000 * max(during),
                "reads_during": len(during),
            }
    finally:
        db.engine.dispose()


HEADER = (
    f"| database | purge of {ROWS:,} jobs | rows/s | idle pass | GET before: p50 / p95 "
    "| GET during: p50 / p95 / max |"
)


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = measure(f"sqlite:///{tmp}/bench.db", Path(tmp))
        print(results["SQLite"], flush=True)
        with scratch_database("ladder_bench_retention") as url:
            results["PostgreSQL"] = measure(url, Path(tmp))
        print(results["PostgreSQL"], flush=True)
    rows = "\n".join(
        f"| {name} | {r['purge_s']:.1f} s | {r['rows_per_s']:,.0f} | {r['idle_pass_ms']:.1f} ms "
        f"| {r['before_p50']:.1f} / {r['before_p95']:.1f} ms "
        f"| {r['during_p50']:.1f} / {r['during_p95']:.1f} / {r['during_max']:.0f} ms |"
        for name, r in results.items()
    )
    write_section(
        "Retention: the purge",
        f"""
{machine()}, {time.strftime("%Y-%m-%d")}. A `jobs` table of {2 * ROWS:,} succeeded jobs, half of
them past the default retention (7 d), a fifth of each with a 1 KiB artifact. The purge deletes
the expired half in batches of {BATCH} (LADDER_PURGE_BATCH), in a process of its own; an idle
pass is the same purge again with nothing left to delete (what each worker's pass costs most
minutes). One client reads kept jobs (`GET /api/v1/jobs/{{id}}`) one after another from the API
under gunicorn (one process), before the purge and while it runs.

{HEADER}
| --- | ---: | ---: | ---: | ---: | ---: |
{rows}

SQLite has no statistics unless ANALYZE runs, and planned the deletes' `status = ?` by the
(status, finished_at) index, reading every expired job in each batch: the same purge went at
3,000 rows/s (2026-12-06, on a busier machine) until the deletes matched `status || ''`, which
leaves it the ids (shared/retention.py; a unit test reads the plans).
""",
    )


if __name__ == "__main__":
    main()
