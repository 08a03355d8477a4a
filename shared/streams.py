"""What happens to a job, as it happens: a Redis stream per job, and the cancel flag.

Whoever changes a job's row (a worker claiming or finishing it, a cancel, a retry) also writes a
`status` entry here, after the commit; a runner adds its own entries (`token`, `stage`, …).
Followers block on the stream instead of polling the database, and read the row only when they
start and when a status says the job has ended: the row stays the truth, and a lost entry
delays a follower (until its next check of the row), never misleads it.

Stream entries carry their own ids, which the API sends as server-sent event ids: a client
that reconnects with Last-Event-ID resumes exactly after the last entry it saw.

`status` entries go to a second stream as well, which only long polls read: a client waiting for
a generation's end is not woken by each of its tokens (8 long polls on chats cost the worker's
llama.cpp threads a quarter of their speed on 2 cores).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Redis = redis.Redis

KEEP_SECONDS = 3600


def stream_key(job_id: str) -> str:
    return f"ladder:job:{job_id}:events"


def status_key(job_id: str) -> str:
    return f"ladder:job:{job_id}:status"


def cancel_key(job_id: str) -> str:
    return f"ladder:job:{job_id}:cancel"


def connect(url: str, max_connections: int = 100) -> Redis:
    return redis.Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=3, max_connections=max_connections
    )


def publish(client: Redis, job_id: str, event: str, data: dict[str, Any]) -> str:
    """Add an entry to the job's stream; returns its id."""
    pipe = client.pipeline(transaction=False)
    add(pipe, job_id, event, data)
    entry_id = pipe.execute()[0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def add(pipe: Pipeline, job_id: str, event: str, data: dict[str, Any]) -> None:
    """Queue an entry on a pipeline, to go with other commands in one round trip."""
    payload = json.dumps(data)
    pipe.xadd(stream_key(job_id), {"event": event, "data": payload}, maxlen=100_000,
              approximate=True)  # fmt: skip
    pipe.expire(stream_key(job_id), KEEP_SECONDS)
    if event == "status":
        pipe.xadd(status_key(job_id), {"event": event, "data": payload}, maxlen=1_000,
                  approximate=True)  # fmt: skip
        pipe.expire(status_key(job_id), KEEP_SECONDS)


def publish_status(client: Redis, job_id: str, status: str, **fields: Any) -> None:
    """Tell followers the job's row changed (after the commit). Best effort: a follower that
    misses it finds the change in the row at its next check."""
    try:
        publish(client, job_id, "status", {"status": status, **fields})
    except RedisError:
        log.warning("could not publish job %s's status %s", job_id, status, exc_info=True)


def read(
    client: Redis, job_id: str, after: str, block_ms: int | None, statuses: bool = False
) -> list[tuple[str, str, dict[str, Any]]]:
    """Entries after the id `after` ("0" for all): (id, event, data) each; with `statuses`,
    from the stream of `status` entries alone."""
    key = status_key(job_id) if statuses else stream_key(job_id)
    reply: Any = client.xread({key: after}, count=500, block=block_ms)
    entries = []
    for _, items in reply or []:
        for entry_id, fields in items:
            entries.append(
                (
                    entry_id.decode(),
                    fields[b"event"].decode(),
                    json.loads(fields[b"data"]),
                )
            )
    return entries


def request_cancel(client: Redis, job_id: str) -> None:
    client.set(cancel_key(job_id), "1", ex=KEEP_SECONDS)


def cancel_requested(client: Redis, job_id: str) -> bool:
    return bool(client.exists(cancel_key(job_id)))
