"""The reconciler: jobs the database says are waiting or running, but nothing will finish.

Redis holds messages, the database holds the truth, and the two can drift apart: a Redis that
restarts empty, an API killed between its commit and its send, a worker host that dies with
jobs it had taken (Redis would hand those back only after the visibility timeout). Every
worker runs this loop; a lock in Redis lets one of them do a pass at a time. A pass re-sends:

- a `queued` job older than `reconcile_after` seconds whose message is nowhere in Redis, or
  was taken by a worker more than `reconcile_after` seconds ago and never claimed (a live
  worker claims what it takes within moments; this one died in between);
- a `running` job whose lease has lapsed (see worker.leases): its worker died, or lost it.
  Its old, unacknowledged message is dropped, so that Redis cannot hand it back as well. The next
  attempt is counted as any other, so a job whose workers keep dying ends as `worker_lost`.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import select

from shared.config import Settings
from shared.db import Database
from shared.models import Job, JobStatus, utcnow
from shared.producer import Producer, message_queues, queue_lists
from shared.streams import Redis
from worker import leases
from worker.app import LadderCelery

log = logging.getLogger(__name__)

UNACKED, UNACKED_INDEX = "unacked", "unacked_index"  # kombu's Redis transport keeps these
LOCK = "ladder:reconciler"
PASSES = "ladder:reconciler:passes"
"""How many passes have run, across workers: something to wait on."""


def _job_id(message: Any) -> str | None:
    try:
        payload = json.loads(message)
    except (TypeError, ValueError):
        return None
    if isinstance(payload, list):  # an unacked entry: [message, exchange, routing key]
        payload = payload[0]
    headers = payload.get("headers", {}) if isinstance(payload, dict) else {}
    found = headers.get("id")
    return str(found) if found else None


def waiting_in_redis(client: Redis) -> set[str]:
    """Ids of the jobs whose messages sit in a queue."""
    ids = set()
    for name in (name for queue in message_queues() for name in queue_lists(queue)):
        for message in client.lrange(name, 0, -1):
            if (job_id := _job_id(message)) is not None:
                ids.add(job_id)
    return ids


def taken_in_redis(client: Redis) -> dict[str, bytes | str]:
    """Delivery tags of the messages workers hold unacknowledged, by job id."""
    taken = {}
    for tag, message in client.hgetall(UNACKED).items():
        if (job_id := _job_id(message)) is not None:
            taken[job_id] = tag
    return taken


def _taken_before(client: Redis, taken: dict[str, bytes | str], moment: float) -> set[str]:
    """The jobs whose messages a worker took before `moment` (a UNIX time) and still holds."""
    if not taken:
        return set()
    pipe = client.pipeline(transaction=False)
    for tag in taken.values():
        pipe.zscore(UNACKED_INDEX, tag)
    when = pipe.execute()
    return {
        job_id for job_id, at in zip(taken, when, strict=True) if at is not None and at < moment
    }


def reconcile(
    db: Database, client: Redis, producer: Producer, settings: Settings, suspects: set[str]
) -> tuple[list[str], set[str]]:
    """One pass: re-send the jobs that look lost now and looked lost in the pass before (a
    message moving from a queue to a worker is briefly in neither place). Returns what it sent
    and what looks lost now."""
    bound = timedelta(seconds=settings.reconcile_after)
    before = utcnow() - bound
    with db.session() as session:
        queued = session.execute(
            select(Job.id, Job.kind, Job.queue, Job.priority)
            .where(Job.status == JobStatus.QUEUED, Job.created_at < before)
        ).all()  # fmt: skip
        running = session.execute(
            select(Job.id, Job.kind, Job.queue, Job.priority)
            .where(Job.status == JobStatus.RUNNING, Job.started_at < before)
        ).all()  # fmt: skip
    if not queued and not running:
        return [], set()
    waiting, taken = waiting_in_redis(client), taken_in_redis(client)
    stale = _taken_before(client, taken, before.timestamp())
    # Queued, and its message neither waits in a queue nor sits with a live worker: a worker
    # claims a message it takes within moments, so one taken long ago and still unclaimed,
    # with no lease, was taken by a worker that died.
    lost = {
        row.id
        for row in queued
        if row.id not in waiting
        and (row.id not in taken or (row.id in stale and leases.holder(client, row.id) is None))
    }
    # Running, but nobody holds its lease: its worker died, or lost it (a final write that
    # never landed).
    lost |= {
        row.id for row in running if row.id not in waiting and leases.holder(client, row.id) is None
    }
    resent = []
    for job_id, kind, queue, priority in [*queued, *running]:
        if job_id not in lost & suspects:
            continue
        if job_id in taken:  # the dead worker's copy: Redis must not restore it later
            pipe = client.pipeline()
            pipe.zrem(UNACKED_INDEX, taken[job_id])
            pipe.hdel(UNACKED, taken[job_id])
            pipe.execute()
        producer.send(job_id, kind, queue, priority)
        resent.append(job_id)
    if resent:
        log.warning("reconciler: sent %d jobs again: %s", len(resent), ", ".join(resent[:20]))
    return resent, lost - set(resent)


def install(app: LadderCelery) -> None:
    """Run a pass every half `reconcile_after` seconds in each worker's main process."""
    stop = threading.Event()
    every = max(1.0, app.settings.reconcile_after / 2)

    def loop() -> None:
        suspects: set[str] = set()
        while not stop.wait(every):
            try:
                # One worker at a time; the lock lapses by itself if that worker dies.
                if app.redis.set(LOCK, "1", nx=True, ex=max(1, int(every))):
                    _, suspects = reconcile(app.db, app.redis, app.producer, app.settings, suspects)
                    app.redis.incr(PASSES)
            except Exception:
                log.warning("reconciler pass failed; trying again later", exc_info=True)

    def on_ready(**_: Any) -> None:
        threading.Thread(target=loop, name="ladder-reconciler", daemon=True).start()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(lambda **_: stop.set(), weak=False)
