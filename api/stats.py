"""What the system is doing: job counts, queue depths, throughput and durations, failures.

Counts come from the database and depths from Redis at the moment they are asked for, so every
API process (and every machine) answers the same.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from shared.db import Database
from shared.models import Job, JobStatus, utcnow
from shared.producer import message_queues, queue_lists
from shared.streams import Redis

WINDOWS = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}
SAMPLE = 10_000
"""Percentiles are taken over at most this many of the latest jobs in a window."""


def queue_depths(client: Redis) -> dict[str, int]:
    """Messages waiting per queue (`cpu`, `gpu`, `cpu.generate`, …): Redis keeps one list per
    priority (`cpu`, `cpu:1`, …)."""
    depths = {}
    for queue in message_queues():
        pipe = client.pipeline(transaction=False)
        for name in queue_lists(queue):
            pipe.llen(name)
        depths[queue] = int(sum(pipe.execute()))
    return depths


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(db: Database, client: Redis) -> dict[str, Any]:
    now = utcnow()
    with db.session() as session:
        rows = session.execute(
            select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
        )
        by_status: Counter[str] = Counter()
        by_kind: dict[str, Counter[str]] = {}
        for kind, status, count in rows:
            by_status[status] += count
            by_kind.setdefault(kind, Counter())[status] += count
        windows = {}
        for label, span in WINDOWS.items():
            since = now - span
            finished = session.execute(
                select(Job.status, Job.duration_seconds, Job.error)
                .where(Job.finished_at >= since)
                .order_by(Job.finished_at.desc())
                .limit(SAMPLE)
            ).all()
            durations = [d for s, d, _ in finished if s == JobStatus.SUCCEEDED and d is not None]
            failures = Counter(
                (e or {}).get("code", "unknown") for s, _, e in finished if s == JobStatus.FAILED
            )
            windows[label] = {
                "finished": len(finished),
                "succeeded": sum(1 for s, _, _ in finished if s == JobStatus.SUCCEEDED),
                "throughput_per_s": round(len(finished) / span.total_seconds(), 4),
                "duration_p50_s": percentile(durations, 0.5),
                "duration_p95_s": percentile(durations, 0.95),
                "failures": dict(failures),
            }
    return {
        "jobs": {
            "by_status": {s: by_status.get(s, 0) for s in JobStatus},
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        },
        "queues": queue_depths(client),
        "windows": windows,
        "at": now.isoformat().replace("+00:00", "Z"),
    }


def throughput_series(db: Database, minutes: int = 60) -> list[dict[str, Any]]:
    """Jobs finished per minute over the last `minutes`, oldest first, for the chart."""
    now = utcnow().replace(second=0, microsecond=0)
    since = now - timedelta(minutes=minutes - 1)
    with db.session() as session:
        stamps = session.scalars(select(Job.finished_at).where(Job.finished_at >= since)).all()
    counts: Counter[int] = Counter()
    for stamp in stamps:
        if stamp is not None:  # SQLite hands back naive UTC
            aware = stamp if stamp.tzinfo else stamp.replace(tzinfo=now.tzinfo)
            counts[int((aware - since).total_seconds() // 60)] += 1
    return [
        {
            "minute": (since + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
            "finished": counts[i],
        }
        for i in range(minutes)
    ]
