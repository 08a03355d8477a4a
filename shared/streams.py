"""What a running job says as it goes, in a Redis stream per job, and the cancel flag.

Stream entries carry their own ids, which the API sends as server-sent event ids: a client
that reconnects with Last-Event-ID resumes exactly after the last entry it saw.
"""

from __future__ import annotations

import json
from typing import Any

import redis

Redis = redis.Redis

KEEP_SECONDS = 3600


def stream_key(job_id: str) -> str:
    return f"ladder:job:{job_id}:events"


def cancel_key(job_id: str) -> str:
    return f"ladder:job:{job_id}:cancel"


def connect(url: str) -> Redis:
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=3)


def publish(client: Redis, job_id: str, event: str, data: dict[str, Any]) -> str:
    key = stream_key(job_id)
    pipe = client.pipeline(transaction=False)
    pipe.xadd(key, {"event": event, "data": json.dumps(data)}, maxlen=100_000, approximate=True)
    pipe.expire(key, KEEP_SECONDS)
    entry_id, _ = pipe.execute()
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def read(
    client: Redis, job_id: str, after: str, block_ms: int | None
) -> list[tuple[str, str, dict[str, Any]]]:
    """Entries after the id `after` ("0" for all): (id, event, data) each."""
    reply: Any = client.xread({stream_key(job_id): after}, count=500, block=block_ms)
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
