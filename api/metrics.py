"""`/metrics` for Prometheus, read from the database and Redis at each scrape.

Nothing is counted in the API's memory: every gunicorn process, on every machine, gives the
same numbers, and nothing is lost when a process restarts.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import case, func, select

from api.stats import queue_depths
from shared import workers
from shared.db import Database
from shared.models import FINISHED, Job
from shared.streams import Redis

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)


class LadderCollector:
    def __init__(self, db: Database, client: Redis) -> None:
        self.db, self.client = db, client

    def collect(self) -> Iterator[Metric]:
        submitted = CounterMetricFamily(
            "ladder_jobs_submitted", "Jobs accepted, by kind.", labels=["kind"]
        )
        finished = CounterMetricFamily(
            "ladder_jobs_finished", "Jobs ended, by kind and status.", labels=["kind", "status"]
        )
        with self.db.session() as session:
            per_kind: dict[str, int] = {}
            for kind, status, count in session.execute(
                select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
            ):
                per_kind[kind] = per_kind.get(kind, 0) + count
                if status in FINISHED:
                    finished.add_metric([kind, status], count)
            for kind, count in per_kind.items():
                submitted.add_metric([kind], count)
            duration = HistogramMetricFamily(
                "ladder_job_duration_seconds", "Run time of finished jobs.", labels=["kind"]
            )
            measured = Job.duration_seconds
            columns = [func.sum(case((measured <= b, 1), else_=0)) for b in BUCKETS]
            for kind, total, count, *under in session.execute(
                select(Job.kind, func.sum(measured), func.count(measured), *columns)
                .where(measured.is_not(None))
                .group_by(Job.kind)
            ):
                buckets = [(str(b), int(n or 0)) for b, n in zip(BUCKETS, under, strict=True)]
                duration.add_metric([kind], [*buckets, ("+Inf", int(count))], float(total or 0))
        yield submitted
        yield finished
        yield duration
        depth = GaugeMetricFamily("ladder_queue_depth", "Messages waiting.", labels=["queue"])
        for queue, n in queue_depths(self.client).items():
            depth.add_metric([queue], n)
        yield depth
        registry = workers.all_workers(self.client)
        counts: dict[tuple[str, str], int] = {}
        memory = GaugeMetricFamily(
            "ladder_device_memory_bytes", "Device memory in use.", labels=["worker", "device"]
        )
        for worker in registry:
            key = (worker.get("pool", "cpu"), worker["state"])
            counts[key] = counts.get(key, 0) + 1
            device = worker.get("device", {})
            if worker["state"] == "online":
                if "ram_used_bytes" in device:
                    memory.add_metric([worker["name"], "ram"], device["ram_used_bytes"])
                if "gpu_used_bytes" in device:
                    memory.add_metric([worker["name"], "gpu"], device["gpu_used_bytes"])
        gauge = GaugeMetricFamily(
            "ladder_workers", "Workers by pool and state.", labels=["pool", "state"]
        )
        for pool in ("cpu", "gpu"):
            for state in ("online", "offline"):
                gauge.add_metric([pool, state], counts.get((pool, state), 0))
        yield gauge
        yield memory


def render(db: Database, client: Redis) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LadderCollector(db, client))
    return generate_latest(registry)
