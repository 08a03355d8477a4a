"""The producer: how a committed job becomes a message in Redis, and how a running one is stopped.

The API's submit, the dashboard's retry and the workers' reconciler all send through here, so
a message has one shape (the job id, nothing else, with the kind's time limits) and one failure
policy: a few quick retries while the broker is briefly away, then `BrokerUnavailable`. What the
caller does then is its own business (the API undoes the row, the reconciler tries next pass).
Both sides build their Celery app from `celery_config`, so producer and consumer agree on the
queues, priorities and serialisation.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery

from shared import kinds
from shared.config import Settings

log = logging.getLogger(__name__)

TASK_NAME = "ladder.run_job"
QUEUES = ("cpu", "gpu")
PRIORITIES = 10
"""Job priorities run 0-9, 9 the most urgent; Redis' own order is the reverse (0 first)."""
LOWEST, HIGHEST = 0, PRIORITIES - 1
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
"""About a second of retries, then give up: a client is waiting on the answer."""


class BrokerUnavailable(Exception):
    """The broker did not take the message."""


def route(kind: str, pool: str) -> str:
    """The Celery queue of a job's message: its pool's, or `<pool>.<kind>` for a kind whose
    workers decode many jobs together (they run a threads pool, not prefork)."""
    found = kinds.get(kind)
    return f"{pool}.{kind}" if found is not None and found.batches else pool


def message_queues() -> list[str]:
    """Every queue a message may wait in: the pools', then the batching kinds' own."""
    batching = [k for k in kinds.enabled().values() if k.batches]
    return [*QUEUES, *(route(k.name, pool) for k in batching for pool in k.pools)]


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold a queue's messages, one per priority: `cpu`, `cpu:1`, …"""
    return [queue if p == 0 else f"{queue}:{p}" for p in range(PRIORITIES)]


def redis_priority(priority: int) -> int:
    """Ladder's priority (9 most urgent) as the Redis transport's (0 served first)."""
    return HIGHEST - priority


def time_limit(settings: Settings, kind: str) -> int:
    """The hard time limit, seconds, of a job of this kind."""
    found = kinds.get(kind)
    return settings.time_limits.get(kind, 60) if found is None else found.time_limit_for(settings)


def visibility_timeout(settings: Settings) -> int:
    """Redis re-delivers an unacknowledged message after this many seconds: by default longer
    than any job may run (leases keep a job from running twice when it is set shorter)."""
    if settings.redelivery_after is not None:
        return settings.redelivery_after
    longest = max((k.time_limit_for(settings) for k in kinds.enabled().values()), default=60)
    return 2 * longest + 60


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings producer and workers share: JSON only, priorities, no results."""
    return {
        "broker_url": settings.broker_url,
        "accept_content": ["json"],
        "task_serializer": "json",
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": "cpu",
        "task_create_missing_queues": True,
        # Fail fast when the broker is down, so that a submit answers 503 instead of hanging.
        "broker_connection_timeout": 3,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout(settings),
            "priority_steps": list(range(PRIORITIES)),
            "sep": ":",
            "queue_order_strategy": "priority",
        },
    }


class Producer:
    """Sends job messages and revokes running jobs. Give it the process's Celery app, if it has
    one (a worker), so that messages share its connections; else it builds a small one."""

    def __init__(self, settings: Settings, celery: Celery | None = None) -> None:
        self.settings = settings
        if celery is None:
            celery = Celery("ladder", set_as_current=False)
            celery.conf.update(celery_config(settings))
        self.celery = celery

    def send(self, job_id: str, kind: str, queue: str, priority: int) -> None:
        """Queue a committed job: its id only, with its kind's time limits. `queue` is the
        job's pool (`cpu`, `gpu`); `route` names the Celery queue."""
        try:
            self.celery.send_task(
                TASK_NAME,
                retry=True,
                retry_policy=RETRY_POLICY,
                **self._message(job_id, kind, queue, priority),
            )
        except Exception as exc:
            log.warning("could not queue job %s: %s", job_id, exc)
            raise BrokerUnavailable(str(exc)) from exc

    def send_many(self, messages: list[tuple[str, str, str, int]]) -> None:
        """Queue committed jobs, each (job id, kind, queue, priority), in one Redis pipeline.

        A failed pipeline is sent again whole, as `send` retries one message: a message that
        arrives twice runs once (see worker.leases)."""
        tries = 1 + int(RETRY_POLICY["max_retries"])
        for attempt in range(tries):
            try:
                with (
                    self.celery.producer_or_acquire() as producer,
                    producer.batch(max_size=2 * len(messages) + 1),
                ):
                    for job_id, kind, queue, priority in messages:
                        self.celery.send_task(
                            TASK_NAME, producer=producer, **self._message(job_id, kind, queue,
                                                                          priority)
                        )  # fmt: skip
                return
            except Exception as exc:
                if attempt + 1 == tries:
                    log.warning("could not queue a batch of %d jobs: %s", len(messages), exc)
                    raise BrokerUnavailable(str(exc)) from exc
                time.sleep(RETRY_POLICY["interval_step"] * attempt)

    def _message(self, job_id: str, kind: str, queue: str, priority: int) -> dict[str, Any]:
        limit = time_limit(self.settings, kind)
        return {
            "args": [job_id],
            "task_id": job_id,
            "queue": route(kind, queue),
            "priority": redis_priority(priority),
            "time_limit": limit,
            "soft_time_limit": limit - max(1, limit // 20),
        }

    def revoke(self, job_id: str) -> None:
        """Stop a running job's process (for kinds that do not stop themselves on a cancel)."""
        self.celery.control.revoke(job_id, terminate=True, signal="SIGTERM")

    def ping(self) -> None:
        """Raise unless the broker answers now."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
