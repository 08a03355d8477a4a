"""The worker registry in Redis: each worker's heartbeat, and which pools are live now.

A worker writes its description under `ladder:worker:<name>` every INTERVAL seconds with a
time-to-live of three intervals, so a worker that stops beating drops out by itself.
"""

from __future__ import annotations

import json
from typing import Any

from shared.streams import Redis

INTERVAL = 5
PREFIX = "ladder:worker:"


def beat(client: Redis, name: str, info: dict[str, Any]) -> None:
    client.set(PREFIX + name, json.dumps(info), ex=3 * INTERVAL)


def forget(client: Redis, name: str) -> None:
    client.delete(PREFIX + name)


def live(client: Redis) -> list[dict[str, Any]]:
    """The workers whose heartbeat has not expired."""
    keys = sorted(client.scan_iter(match=PREFIX + "*", count=500))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]


def live_pools(client: Redis) -> set[str]:
    return {w.get("pool", "") for w in live(client)}
