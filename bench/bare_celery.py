"""The yardstick: a bare Celery app with a no-op task on the same Redis (no HTTP, no database).

The task only counts itself in Redis, so the benchmark can tell when the queue has drained.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")
COUNTER = "bench:bare:done"

app = Celery("bare", broker=BROKER_URL)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=1, task_acks_late=True)
_counter = redis.Redis.from_url(BROKER_URL)


@app.task(name="bare.noop")
def noop() -> None:
    _counter.incr(COUNTER)
