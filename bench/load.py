"""Load: 10,000 stairs jobs from 16 concurrent clients, each with an API key of its own, through
the API under gunicorn to a prefork worker, rows in PostgreSQL.

Reports what a client sees: 202s a second, submit latency (p50, p99), the time until the last
job ended, and submit→succeeded latency from the rows. It also counts what must hold under load
(tests/faults/test_load.py asserts the same, with the same `drive`): every submission a 202,
every job run exactly once, no 5xx.

Needs this machine's Redis (BENCH_BROKER_URL) and PostgreSQL (BENCH_POSTGRES).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

import redis
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.auth import create_key
from bench.common import Drive, drive, machine, percentile, scratch_database, stop, write_section
from bench.service import BROKER_URL, Ladder, wait_done
from shared.models import Job

JOBS = int(os.environ.get("BENCH_LOAD_JOBS", "10000"))
CLIENTS = 16


def main() -> None:
    redis.Redis.from_url(BROKER_URL).flushdb()
    with scratch_database("ladder_load") as database_url, tempfile.TemporaryDirectory() as tmp:
        ladder = Ladder(Path(tmp), database_url)
        worker = ladder.worker()
        try:
            tokens = [create_key(ladder.db, f"client-{i}") for i in range(CLIENTS)]
            seen = drive(ladder.url, tokens, JOBS)
            wait_done(ladder.ended, len(seen.accepted))
            with ladder.db.session() as session:
                rows = list(session.scalars(select(Job)))
        finally:
            stop(worker)
            ladder.close()
    _report(seen, rows)


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
