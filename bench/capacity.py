"""Capacity: the figures to size a deployment by, measured on this machine with PostgreSQL.

- the API's submissions a second from one gunicorn process (no worker running);
- each kind's jobs a second from one worker process (-c 1), the queue filled first;
- what one job costs the shared parts: rows written in PostgreSQL (pg_stat_user_tables) and
  commands in Redis (INFO commandstats).

Needs this machine's Redis (BENCH_BROKER_URL) and PostgreSQL (BENCH_POSTGRES).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.auth import create_key
from bench.common import drive, machine, scratch_database, stop, write_section
from bench.service import BROKER_URL, Ladder, wait_done
from scripts import processes
from shared.models import Job
from shared.producer import route

TEXT = " ".join(["The quick brown fox jumps over the lazy dog, and then it rests."] * 12)
KINDS: dict[str, tuple[dict[str, Any], int]] = {
    "stairs": ({"n": 30}, 1000),
    "attention": ({"text": TEXT, "max_tokens": 128}, 60),
    # Three batches of 8: the first's end starts the count.
    "generate": ({"prompt": "Count from one to one hundred in words:", "max_new_tokens": 64}, 24),
}


def counters(dsn: str, client: redis.Redis) -> dict[str, int]:
    """Rows written so far in the database, and commands so far in Redis."""
    time.sleep(11)  # an idle backend reports its statistics within 10 s
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        (writes,) = conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        ).fetchone() or (0,)
    stats = client.info("commandstats")
    commands = sum(int(v["calls"]) for v in stats.values())
    return {"writes": int(writes), "redis": commands}


def completion_tokens(ladder: Ladder) -> float:
    """Mean tokens a generate job made (0 for other kinds)."""
    with ladder.db.session() as s:
        results = s.scalars(select(Job.result)).all()
    made = [r["tokens"]["completion"] for r in results if r and isinstance(r.get("tokens"), dict)]
    return sum(made) / len(made) if made else 0.0


def drain(ladder: Ladder, count: int, kind: str) -> float:
    """Start one worker process on the kind's filled queue; its jobs a second in steady state,
    from the first job's end to the last's (so neither start-up nor model loading counts)."""
    # A batching kind has a queue of its own, served by one process's threads pool, a thread a
    # job of its batch: the first batch's jobs end together, so the count starts after them.
    queue = route(kind, "cpu")
    together = 1 if queue == "cpu" else processes.batch_size(queue)
    worker = ladder.worker(concurrency=None if together > 1 else 1, queue=queue)
    wait_done(ladder.ended, count)
    stop(worker)
    with ladder.db.session() as s:
        failed = s.scalar(select(func.count()).where(Job.status != "succeeded")) or 0
        ends = s.scalars(select(Job.finished_at).order_by(Job.finished_at)).all()
    assert failed == 0, f"{failed} jobs did not succeed; see the worker log"
    return (count - together) / (ends[-1] - ends[together - 1]).total_seconds()


def main() -> None:
    client = redis.Redis.from_url(BROKER_URL)
    client.flushdb()
    rows: dict[str, dict[str, float]] = {}
    with scratch_database("ladder_capacity") as url, tempfile.TemporaryDirectory() as tmp:
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        ladder = Ladder(Path(tmp), url)
        try:
            token = create_key(ladder.db, "capacity")
            tokens = [create_key(ladder.db, f"client-{i}") for i in range(16)]
            seen = drive(ladder.url, tokens, 2000)
            submits = len(seen.accepted) / seen.seconds
            ladder.clear()
            client.flushdb()  # their messages too, or the next worker would drain them
            for kind, (params, count) in KINDS.items():
                before = counters(dsn, client)
                seen = drive(ladder.url, [token], count, kind, params)
                assert len(seen.accepted) == count, seen.statuses
                rate = drain(ladder, count, kind)
                after = counters(dsn, client)
                rows[kind] = {k: (after[k] - before[k]) / count for k in after}
                rows[kind]["rate"] = rate
                rows[kind]["tokens"] = completion_tokens(ladder)
                ladder.clear()
                client.flushdb()
        finally:
            ladder.close()
    _report(submits, rows)


def _report(submits: float, rows: dict[str, dict[str, float]]) -> None:
    def line(kind: str, r: dict[str, float]) -> str:
        per_job = f"{r['tokens']:.0f} tokens ({r['rate'] * r['tokens']:.1f} tokens/s)"
        return (f"| {kind} | {r['rate']:.2f} | {r['writes']:.1f} | {r['redis']:.0f} | "
                f"{per_job if r['tokens'] else ''} |")  # fmt: skip

    lines = "\n".join(line(kind, r) for kind, r in rows.items())
    write_section(
        "Capacity: one process of each part, on PostgreSQL",
        f"""
{machine()}, {time.strftime("%Y-%m-%d")}; PostgreSQL and Redis on the same machine. API: 2,000
stairs submissions from 16 clients to one gunicorn process (8 threads), no worker running:
**{submits:.0f} submissions/s**. Workers: the queue filled first, then one worker process
drains it (`-c 1`; generate's, a threads pool decoding its batch of 8 together); its rate is
counted from the first job's end (the first batch's) to the last's, so start-up and loading
the model (once per worker process) are not in it. Per job, what the submission
and the run cost the shared parts: rows written in PostgreSQL (pg_stat_user_tables), and
commands in Redis (INFO commandstats: the broker's, the lease, token streams, and the
heartbeats and reconciler passes over the run).

| kind | jobs/s per worker process | rows written/job | Redis commands/job | generated |
| --- | ---: | ---: | ---: | --- |
{lines}

stairs: n = 30. attention: text mode, 128 tokens, all-MiniLM-L6-v2. generate: SmolLM2-135M,
up to 64 new tokens, fp32 on CPU. The statements behind the rows: the API reads the key and
inserts the job (two transactions); the worker claims the row and finishes it (two UPDATEs,
plus one INSERT per artifact: attention's heatmap and explorer page), and a running job's
progress (at most one UPDATE a second).
""",
    )


if __name__ == "__main__":
    main()
