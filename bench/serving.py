"""Serving many at once: followers on one API process, and small jobs against bare Celery.

Followers: N jobs are queued with no worker running, N clients open their event streams, and
while they wait the benchmark times `/healthz` and submits and reads the API process's CPU and
memory; then a worker starts and every follower must receive its job's `end` event.

Small jobs: stairs (n = 30) through the whole service (HTTP → row → Redis → worker → row)
against a no-op task of bare Celery, on the same Redis, in the same run: single submits from 8
clients, batch submits, and one job at a time at idle (created → finished).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.auth import create_key
from bench.common import machine, percentile, stop, write_section
from bench.service import BROKER_URL, PORT, TOKEN, Bare, Ladder, N, submit_all, wait_done
from scripts.followers import Followers
from shared.models import Job

FOLLOWER_COUNTS = [int(n) for n in os.environ.get("BENCH_FOLLOWERS", "100,1000").split(",")]
KEYS = 20
"""Followers are spread over this many keys, as many clients would be."""
BATCH = 500
IDLE_JOBS = 200


def request(
    conn: http.client.HTTPConnection, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any, float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    return response.status, json.loads(data) if data else None, elapsed


def api_process(master_pid: int) -> int:
    """The pid of gunicorn's one worker process (the master only supervises)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                return int(entry.name)
    raise RuntimeError("gunicorn has no worker process")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def latencies(method: str, path: str, body: Any = None, count: int = 100) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    seen = []
    for _ in range(count):
        status, _, elapsed = request(conn, method, path, TOKEN, body)
        assert status in (200, 202), status
        seen.append(elapsed)
    return seen


def follow(count: int, tmp: Path) -> dict[str, float]:
    ladder = Ladder(tmp, env={"LADDER_MAX_STREAMS_PER_KEY": str(count // KEYS + 1)})
    try:
        tokens = [create_key(ladder.db, f"follower-{i}") for i in range(KEYS)]
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        ids: list[tuple[str, str]] = []
        for i, token in enumerate(tokens):
            jobs = [{"kind": "stairs", "params": {"n": 30}}] * (count // KEYS)
            status, body, _ = request(conn, "POST", "/api/v1/jobs/batch", token, {"jobs": jobs})
            assert status == 202, (status, body, i)
            ids += [(job["id"], token) for job in body["items"]]
        worker_pid = api_process(ladder.api.pid)
        rss_before = rss_bytes(worker_pid)
        opening = time.perf_counter()
        followers = Followers("127.0.0.1", PORT, ids)
        assert followers.wait("opened", 120), f"{followers.count('opened')} of {count} opened"
        opened_in = time.perf_counter() - opening
        cpu_before, wall_before = cpu_seconds(worker_pid), time.perf_counter()
        followers.pump(5)  # idle: every follower blocked on its stream
        idle_cpu = (cpu_seconds(worker_pid) - cpu_before) / (time.perf_counter() - wall_before)
        health = latencies("GET", "/healthz")
        submits = latencies("POST", "/api/v1/jobs", {"kind": "stairs", "params": {"n": 30}})
        rss_after = rss_bytes(worker_pid)
        started = time.perf_counter()
        worker = ladder.worker()
        ended = followers.wait("ended", 300)
        all_ended_in = time.perf_counter() - started
        received = followers.count("ended")
        followers.close()
        stop(worker)
        assert ended, f"only {received} of {count} followers saw their job end"
        return {
            "followers": count,
            "opened_in": opened_in,
            "health_p50": percentile(health, 0.5),
            "health_p99": percentile(health, 0.99),
            "submit_p50": percentile(submits, 0.5),
            "submit_p99": percentile(submits, 0.99),
            "idle_cpu": idle_cpu,
            "rss_per_follower": (rss_after - rss_before) / count,
            "received": received,
            "all_ended_in": all_ended_in,
        }
    finally:
        ladder.close()


def batch_submits(ladder: Ladder) -> float:
    """Jobs/s from first submit to last job succeeded, sent as batches of BATCH."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    started = time.perf_counter()
    size = min(BATCH, N)
    for _ in range(N // size):
        jobs = [{"kind": "stairs", "params": {"n": 30}}] * size
        status, _, _ = request(conn, "POST", "/api/v1/jobs/batch", TOKEN, {"jobs": jobs})
        assert status == 202, status
    wait_done(ladder.succeeded, N // size * size)
    return N // size * size / (time.perf_counter() - started)


def idle_latency(ladder: Ladder) -> float:
    """created → finished p50 of jobs sent one at a time, each after the last has ended."""
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    for _ in range(IDLE_JOBS):
        status, job, _ = request(conn, "POST", "/api/v1/jobs", TOKEN,
                                 {"kind": "stairs", "params": {"n": 30}})  # fmt: skip
        assert status == 202
        request(conn, "GET", f"/api/v1/jobs/{job['id']}?wait=10", TOKEN)
    with ladder.db.session() as s:
        rows = s.execute(select(Job.created_at, Job.finished_at).order_by(Job.seq.desc())
                         .limit(IDLE_JOBS)).all()  # fmt: skip
    return percentile(
        [(f.replace(tzinfo=UTC) - c.replace(tzinfo=UTC)).total_seconds() for c, f in rows], 0.5
    )


def small_jobs(tmp: Path) -> dict[str, float]:
    flush = redis.Redis.from_url(BROKER_URL).flushdb
    flush()
    ladder = Ladder(tmp)
    try:
        worker = ladder.worker()
        single_seconds = submit_all()
        wait_done(ladder.succeeded)
        with ladder.db.session() as s:
            first, last = s.execute(
                select(func.min(Job.created_at), func.max(Job.finished_at))
            ).one()
        single = N / (last - first).total_seconds()
        ladder.clear()
        batch = batch_submits(ladder)
        ladder.clear()
        idle = idle_latency(ladder)
        stop(worker)
    finally:
        ladder.close()
    flush()
    bare = Bare(tmp).end_to_end()["jobs_per_s"]
    flush()
    return {"single": single, "single_submit": N / single_seconds, "batch": batch,
            "idle_p50": idle, "bare": bare}  # fmt: skip


def main() -> None:
    rows = []
    for count in FOLLOWER_COUNTS:
        redis.Redis.from_url(BROKER_URL).flushdb()
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(follow(count, Path(tmp)))
    with tempfile.TemporaryDirectory() as tmp:
        small = small_jobs(Path(tmp))
    table = "\n".join(
        f"| {r['followers']} | {r['received']} | {r['opened_in']:.1f} s "
        f"| {r['health_p50'] * 1000:.1f} / {r['health_p99'] * 1000:.1f} ms "
        f"| {r['submit_p50'] * 1000:.1f} / {r['submit_p99'] * 1000:.1f} ms "
        f"| {r['idle_cpu']:.1%} | {r['rss_per_follower'] / 1024:.0f} KiB "
        f"| {r['all_ended_in']:.1f} s |"
        for r in rows
    )
    write_section(
        "Serving many at once",
        f"""
{machine()}, {time.strftime("%Y-%m-%d")}. One API process (gunicorn, gevent worker), SQLite,
one Redis; followers spread over {KEYS} keys. The jobs are queued with no worker running, so
every follower waits; `/healthz` and submits are timed (100 each, one after another) while all
of them are open, and CPU and memory are the API process's own. Then a prefork worker ×2 starts
and each follower must receive its job's `end` event.

| followers | saw their job end | all open after | `/healthz` p50 / p99 | submit p50 / p99 \
| API CPU while they wait | memory per follower | all ended after the worker started |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{table}

Small jobs ({N} stairs, n = 30) through the whole service against {N} no-op tasks of bare
Celery (`.delay()` → solo worker) on the same Redis, in the same run; first submit → last
finished:

| | jobs/s | against bare Celery |
| --- | ---: | ---: |
| bare Celery | {small["bare"]:.0f} | 1.00× |
| Ladder, single submits from 8 clients | {small["single"]:.0f} \
| {small["single"] / small["bare"]:.2f}× |
| Ladder, batches of {min(BATCH, N)} | {small["batch"]:.0f} \
| {small["batch"] / small["bare"]:.2f}× |

Single submits alone (8 clients, HTTP): {small["single_submit"]:.0f} a second. At idle, one
job at a time (a long poll waits for each): created → finished p50
{small["idle_p50"] * 1000:.1f} ms.
""",
    )


if __name__ == "__main__":
    main()
