"""The Celery app factory. There is no global app: each process builds its own from Settings."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from shared import streams
from shared.config import Settings
from shared.db import Database
from shared.streams import Redis

TASK_NAME = "ladder.run_job"
QUEUES = ("cpu", "gpu")
PRIORITIES = 10
"""Job priorities run 0-9, 9 the most urgent; Redis' own order is the reverse (0 first)."""


class LadderCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries Ladder's settings and database for its tasks."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("ladder", broker=settings.broker_url, set_as_current=False, **kwargs)
        self.settings = settings
        self._db: Database | None = None
        self._redis: Redis | None = None

    @property
    def db(self) -> Database:
        # Built on first use, so a prefork child never inherits its parent's connections.
        if self._db is None:
            self._db = Database(self.settings.database_url)
        return self._db

    @property
    def redis(self) -> Redis:
        """Redis for streams, cancel flags and heartbeats (the broker's own server)."""
        if self._redis is None:
            self._redis = streams.connect(self.settings.broker_url)
        return self._redis

    def after_fork(self) -> None:
        if self._db is not None:
            self._db.dispose()
        self._redis = None


def create_celery(settings: Settings) -> LadderCelery:
    """A Celery app for Ladder: JSON only, late acks, one message prefetched at a time."""
    app = LadderCelery(settings)
    app.conf.update(
        accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "priority_steps": list(range(PRIORITIES)),
            "sep": ":",
            "queue_order_strategy": "priority",
        },
        worker_send_task_events=True,
    )
    # They need the app they register on: import late.
    from worker import heartbeat, reconciler, tasks

    tasks.register(app)
    worker_process_init.connect(lambda **_: app.after_fork(), weak=False)
    heartbeat.install(app)
    reconciler.install(app)
    return app


def enqueue(app: LadderCelery, job_id: str, kind: str, queue: str, priority: int) -> None:
    """Send a job's message: its id only, with the kind's time limits."""
    limit = app.settings.time_limit(kind)
    app.send_task(
        TASK_NAME,
        args=[job_id],
        task_id=job_id,
        queue=queue,
        priority=redis_priority(priority),
        time_limit=limit,
        soft_time_limit=limit - max(1, limit // 20),
    )


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold a queue's messages, one per priority: `cpu`, `cpu:1`, …"""
    return [queue if p == 0 else f"{queue}:{p}" for p in range(PRIORITIES)]


def redis_priority(priority: int) -> int:
    """Ladder's priority (9 most urgent) as the Redis transport's (0 served first)."""
    return PRIORITIES - 1 - priority
