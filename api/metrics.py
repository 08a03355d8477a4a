"""`/metrics` for Prometheus, read from the database and Redis, and kept in Redis a few seconds.

Nothing is counted in the API's memory: every gunicorn process, on every machine, gives the
same numbers, and nothing is lost when a process restarts. The rendered text is kept in Redis
for CACHE_SECONDS, and one process at a time renders it, so that any number of scrapers on any
number of API processes cost one scan of `jobs` per CACHE_SECONDS.

Counters never go down. Each adds up two tables, read in one statement so that a scrape sees a
job in exactly one of them: the live rows of `jobs`, and `job_tallies`, where a job is counted
when it leaves `jobs` or is run again. The writers of tallies follow one convention:

- A purged job is added to the row (kind, the status it ended with), e.g. ("stairs",
  "succeeded"): it still counts as submitted, as finished with that status, and in the
  duration histogram.
- A job retried after it ended (its row reset to `queued`) is added to the row (kind,
  RETRIED_PREFIX + the status it had), e.g. ("stairs", "retried-failed") (shared.tallies.RETRIED):
  that ending still counts as finished and in the histogram, but not as submitted, since its
  row goes on counting once as submitted, and as finished again when it ends again.

Either writer deletes or resets the job's row and adds to its tally in one transaction
(shared.tallies.add). `duration_buckets` holds the counts at or under each bound of BUCKETS.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.exceptions import RedisError
from sqlalchemy import case, func, null, select

from api.stats import queue_depths
from shared import workers
from shared.db import Database
from shared.models import FINISHED, Job, JobTally
from shared.streams import Redis
from shared.tallies import BUCKETS

log = logging.getLogger(__name__)

RETRIED_PREFIX = "retried-"
"""Begins the status of a tally of jobs that a retry made count again (see above)."""
CACHE_KEY = "ladder:metrics"
RENDERING_KEY = "ladder:metrics:rendering"
CACHE_SECONDS = 5
WAIT_SECONDS = 2.0
"""How long a scrape waits on another process's rendering before it renders itself."""


class Histogram:
    """One kind's finished durations: a count, a sum, and counts at or under each bound."""

    def __init__(self) -> None:
        self.count, self.sum = 0, 0.0
        self.buckets = [0] * len(BUCKETS)

    def add(self, count: int, total: float, buckets: Sequence[Any]) -> None:
        self.count += count
        self.sum += total
        for i, n in enumerate(buckets[: len(BUCKETS)]):
            self.buckets[i] += int(n or 0)


def _rows(db: Database) -> Iterable[Any]:
    """Per (kind, status): jobs, duration count, sum, then either the live rows' bucket counts
    (and None) or the tally's bucket list (after Nones), from both tables in one statement."""
    measured = Job.duration_seconds
    tallied = select(
        JobTally.kind,
        JobTally.status,
        JobTally.jobs,
        JobTally.duration_count,
        JobTally.duration_sum,
        *[null() for _ in BUCKETS],
        JobTally.duration_buckets,
    )
    live = select(
        Job.kind,
        Job.status,
        func.count(),
        func.count(measured),
        func.coalesce(func.sum(measured), 0.0),
        *[func.sum(case((measured <= bound, 1), else_=0)) for bound in BUCKETS],
        null(),
    ).group_by(Job.kind, Job.status)
    # The tallies first: the union's column types (the JSON list) are the first select's.
    with db.session() as session:
        return session.execute(tallied.union_all(live)).all()


class LadderCollector:
    def __init__(self, db: Database, client: Redis) -> None:
        self.db, self.client = db, client

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
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

    def _jobs(self) -> Iterator[Metric]:
        submitted: Counter[str] = Counter()
        finished: Counter[tuple[str, str]] = Counter()
        durations: dict[str, Histogram] = {}
        for kind, recorded, jobs, count, total, *live_buckets, tallied_buckets in _rows(self.db):
            status = recorded.removeprefix(RETRIED_PREFIX)
            if status == recorded:
                submitted[kind] += int(jobs)
            if status in FINISHED:
                finished[kind, status] += int(jobs)
            if count:
                buckets = live_buckets if tallied_buckets is None else tallied_buckets
                durations.setdefault(kind, Histogram()).add(int(count), float(total), buckets)
        family = CounterMetricFamily(
            "ladder_jobs_submitted", "Jobs accepted, by kind.", labels=["kind"]
        )
        for kind, n in sorted(submitted.items()):
            family.add_metric([kind], n)
        yield family
        family = CounterMetricFamily(
            "ladder_jobs_finished", "Jobs ended, by kind and status.", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(finished.items()):
            family.add_metric([kind, status], n)
        yield family
        duration = HistogramMetricFamily(
            "ladder_job_duration_seconds", "Run time of finished jobs.", labels=["kind"]
        )
        for kind, h in sorted(durations.items()):
            buckets = [(str(b), n) for b, n in zip(BUCKETS, h.buckets, strict=True)]
            duration.add_metric([kind], [*buckets, ("+Inf", h.count)], h.sum)
        yield duration


def render(db: Database, client: Redis) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LadderCollector(db, client))
    return generate_latest(registry)


def cached(db: Database, client: Redis) -> bytes:
    """The metrics as some process rendered them in the last CACHE_SECONDS; rendered here when
    none did, by one process at a time while the others wait for its text."""
    try:
        found = client.get(CACHE_KEY)
        if found is None and not client.set(RENDERING_KEY, b"1", nx=True, ex=CACHE_SECONDS):
            deadline = time.monotonic() + WAIT_SECONDS
            while found is None and time.monotonic() < deadline:
                time.sleep(0.05)
                found = client.get(CACHE_KEY)
    except RedisError:
        log.warning("could not read the cached metrics", exc_info=True)
        return render(db, client)
    if found is not None:
        return found if isinstance(found, bytes) else str(found).encode()
    text = render(db, client)
    try:
        pipe = client.pipeline()
        pipe.set(CACHE_KEY, text, ex=CACHE_SECONDS)
        pipe.delete(RENDERING_KEY)
        pipe.execute()
    except RedisError:
        log.warning("could not cache the metrics", exc_info=True)
    return text
