"""Where a small job's time goes in the worker, part by part, without Celery around it.

`execute()` is called in a loop on SQLite and a Redis database of its own for N stairs jobs
(n = 30); then each part of it is timed alone over N fresh rows: the lease, the claim, the
outcome, the `running` entry, and the final pipeline (status entry and tally).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.auth import create_key
from bench.common import machine, write_section
from shared import jobs, streams, workers
from shared.config import Settings
from shared.models import JobStatus
from shared.schema import upgrade
from worker import leases
from worker.app import LadderCelery
from worker.execute import execute

N = int(os.environ.get("BENCH_JOBS", "1000"))
BROKER_URL = os.environ.get("BENCH_WORKER_PATH_REDIS", "redis://127.0.0.1:6379/11")
PARAMS = {"n": 30, "steps": [1, 2], "modulus": None}


def queue_jobs(app: LadderCelery) -> list[str]:
    new = jobs.NewJob(1, "stairs", PARAMS, 5, "auto", "cpu")
    return [jobs.create(app.db, new)[0].id for _ in range(N)]


def per_job_ms(ids: list[str], part: Callable[[str], object]) -> float:
    started = time.perf_counter()
    for job_id in ids:
        part(job_id)
    return (time.perf_counter() - started) / len(ids) * 1000


def main() -> None:
    redis.Redis.from_url(BROKER_URL).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        app = LadderCelery(Settings(database_url=url, broker_url=BROKER_URL))
        create_key(app.db, "bench")
        whole = per_job_ms(queue_jobs(app), lambda job_id: execute(app, job_id, "w@h", None))

        def lease(job_id: str) -> None:
            held = leases.take(app.redis, job_id, "w@h")
            assert held is not None
            with held:
                pass

        def final(job_id: str) -> None:
            pipe = app.redis.pipeline(transaction=False)
            streams.add(pipe, job_id, "status", {"status": JobStatus.SUCCEEDED})
            workers.count_ended(pipe, "w@h", JobStatus.SUCCEEDED)
            pipe.execute()

        ids = queue_jobs(app)
        claims: dict[str, jobs.Claim | None] = {}
        parts = {
            "lease taken and given back (SET NX, EVAL)": per_job_ms(ids, lease),
            "claim (UPDATE … RETURNING, commit)": per_job_ms(
                ids, lambda i: claims.__setitem__(i, jobs.claim(app.db, i, "w@h", 3))
            ),
            "outcome (UPDATE, commit)": per_job_ms(
                ids,
                lambda i: jobs.finish(app.db, i, 1, JobStatus.SUCCEEDED, result={"value": "1"}),
            ),
            "`running` entry (XADD, EXPIRE)": per_job_ms(
                ids, lambda i: streams.publish_status(app.redis, i, JobStatus.RUNNING)
            ),
            "final pipeline (XADD, EXPIRE, HINCRBY, EXPIRE)": per_job_ms(ids, final),
        }
        app.db.engine.dispose()
    redis.Redis.from_url(BROKER_URL).flushdb()
    rows = "\n".join(f"| {name} | {ms:.2f} ms |" for name, ms in parts.items())
    write_section(
        "Where a small job's time goes in the worker",
        f"""
{N} stairs jobs (n = 30), {machine()}, {time.strftime("%Y-%m-%d")}: `execute()` called in a
loop on SQLite and this machine's Redis, no Celery around it: **{whole:.2f} ms a job
({1000 / whole:.0f} jobs/s)**. Each part timed alone over {N} fresh rows:

| part | per job |
| --- | ---: |
{rows}

The rest is the runner itself and Python around it. Bare Celery's no-op task does none of this,
which is why batches of small jobs, where the API is out of the way, stay below its rate.
""",
    )


if __name__ == "__main__":
    main()
