"""Load: 10,000 stairs jobs from 16 concurrent clients, each with an API key of its own, through
the API under gunicorn to a prefork worker, rows in PostgreSQL.

Reports what a client sees: 202s a second, submit latency (p50, p99), the time until the last
job ended, and submit→succeeded latency from the rows. It also counts what must hold under load
(tests/faults/test_load.py asserts the same with `drive`): every submission a 202, every job run
exactly once, no 5xx.

Needs this machine's Redis (BENCH_BROKER_URL) and PostgreSQL (BENCH_POSTGRES).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.auth import create_key
from bench.common import machine, percentile, stop, write_section
from bench.service import BROKER_URL, Ladder
from shared.db import Database
from shared.models import Job

JOBS = int(os.environ.get("BENCH_LOAD_JOBS", "10000"))
CLIENTS = 16
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class Drive:
    """What the clients saw."""

    accepted: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


def drive(
    base_url: str,
    tokens: list[str],
    jobs: int,
    kind: str = "stairs",
    params: dict[str, Any] | None = None,
) -> Drive:
    """POST `jobs` jobs, spread over one keep-alive connection per token; stairs with n < 500
    unless `params` are given."""
    address = urlsplit(base_url)
    seen = Drive()

    def client(index: int) -> None:
        headers = {"Authorization": f"Bearer {tokens[index]}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
        for n in range(index, jobs, len(tokens)):
            body = json.dumps({"kind": kind, "params": params or {"n": n % 500}})
            started = time.perf_counter()
            conn.request("POST", "/api/v1/jobs", body, headers)
            response = conn.getresponse()
            reply = response.read()
            seen.latencies.append(time.perf_counter() - started)  # list.append is atomic
            seen.statuses[response.status] += 1
            if response.status == 202:
                seen.accepted.append(json.loads(reply)["id"])
        conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        list(pool.map(client, range(len(tokens))))
    seen.seconds = time.perf_counter() - started
    return seen


def main() -> None:
    name = f"ladder_load_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    database_url += f"/{name}"
    redis.Redis.from_url(BROKER_URL).flushdb()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ladder = Ladder(Path(tmp), database_url)
            worker = ladder.worker()
            try:
                tokens = [create_key(ladder.db, f"client-{i}") for i in range(CLIENTS)]
                seen = drive(ladder.url, tokens, JOBS)
                rows = _wait_ended(ladder.db, len(seen.accepted))
            finally:
                stop(worker)
                ladder.close()
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _report(seen, rows)


def _wait_ended(db: Database, count: int) -> list[Job]:
    deadline = time.monotonic() + 900
    while True:
        with db.session() as session:
            rows = list(session.scalars(select(Job)))
        if sum(job.finished_at is not None for job in rows) >= count:
            return rows
        assert time.monotonic() < deadline, "jobs did not finish in 15 minutes"
        time.sleep(0.5)


def _report(seen: Drive, rows: list[Job]) -> None:
    created = min(job.created_at for job in rows).replace(tzinfo=UTC)
    ended = max(job.finished_at for job in rows if job.finished_at).replace(tzinfo=UTC)
    through = [(j.finished_at - j.created_at).total_seconds() for j in rows if j.finished_at]
    ran_once = sum(j.status == "succeeded" and j.attempts == 1 for j in rows)
    fives = sum(count for status, count in seen.statuses.items() if status >= 500)
    answers = ", ".join(f"{count} × {status}" for status, count in sorted(seen.statuses.items()))
    write_section(
        "Load: 10,000 jobs from 16 clients",
        f"""
{JOBS} stairs jobs (n < 500) POSTed by {CLIENTS} client threads, each with a key of its own on
a keep-alive connection → gunicorn (1 process × 8 threads) → PostgreSQL → Redis → prefork
worker ×{os.cpu_count()}, all on one machine ({machine()}), {time.strftime("%Y-%m-%d")}.

| | |
| --- | ---: |
| answers | {answers}; 5xx: {fives} |
| jobs in the database | {len(rows)}, {ran_once} succeeded on their first and only attempt |
| accepted a second (202s / submit time) | {len(seen.accepted) / seen.seconds:.0f} |
| submit latency p50 / p99 | {percentile(seen.latencies, 0.5) * 1000:.0f} ms \
/ {percentile(seen.latencies, 0.99) * 1000:.0f} ms |
| first submit → last job ended | {(ended - created).total_seconds():.1f} s \
({len(rows) / (ended - created).total_seconds():.0f} jobs/s) |
| submit → succeeded p50 / p99 | {percentile(through, 0.5):.2f} s \
/ {percentile(through, 0.99):.2f} s |

The clients and the worker share the same cores, so a job waits mostly for its turn in the
queue: submit→succeeded grows with the backlog, not with a job's own cost.
""",
    )


if __name__ == "__main__":
    main()
