"""The worker registry in Redis: each worker's heartbeat, what it holds and what it runs.

A worker's main process writes its description, with the jobs it is running, under
`ladder:worker:<name>` every INTERVAL seconds; its child processes add their tallies and the
models they hold beside it. A worker not heard from for three intervals is offline; its entry
stays a day, so that the dashboard shows hosts come and go.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.client import Pipeline

from shared.streams import Redis

INTERVAL = 5
OFFLINE_AFTER = 3 * INTERVAL
KEEP_SECONDS = 24 * 3600
PREFIX = "ladder:worker:"


def _key(name: str, part: str = "") -> str:
    return f"{PREFIX}{name}{':' + part if part else ''}"


def beat(client: Redis, name: str, info: dict[str, Any]) -> None:
    client.set(_key(name), json.dumps({**info, "seen_at": time.time()}), ex=KEEP_SECONDS)


def forget(client: Redis, name: str) -> None:
    """A worker that shuts down cleanly says so at once (its entry is marked, not deleted)."""
    raw = client.get(_key(name))
    if raw:
        info = json.loads(raw)
        info.update(seen_at=0, stopped=True, running=[])
        client.set(_key(name), json.dumps(info), ex=KEEP_SECONDS)


def count_ended(pipe: Pipeline, name: str, status: str) -> None:
    """Count a job a worker finished, by how it ended (queued on the worker's pipeline)."""
    pipe.hincrby(_key(name, "counts"), status, 1)
    pipe.expire(_key(name, "counts"), KEEP_SECONDS)


def hold_model(client: Redis, name: str, pid: int, model: str, info: dict[str, Any]) -> None:
    client.hset(
        _key(name, "models"), f"{pid}:{model}", json.dumps({"model": model, "pid": pid, **info})
    )
    client.expire(_key(name, "models"), KEEP_SECONDS)


def prune_models(client: Redis, name: str, pids: set[int]) -> None:
    """Forget models held by child processes that are gone."""
    for field in client.hkeys(_key(name, "models")):
        if int(_text(field).split(":", 1)[0]) not in pids:
            client.hdel(_key(name, "models"), field)


def all_workers(client: Redis) -> list[dict[str, Any]]:
    """Every worker heard from in the last day, with `state` online or offline."""
    keys = (_text(k) for k in client.scan_iter(match=PREFIX + "*", count=1000))
    names = sorted(k.removeprefix(PREFIX) for k in keys if not k.endswith((":counts", ":models")))
    now = time.time()
    result = []
    for name in names:
        raw = client.get(_key(name))
        if not raw:
            continue
        info = json.loads(raw)
        online = now - info.get("seen_at", 0) <= OFFLINE_AFTER
        info["state"] = "online" if online else "offline"
        info["running"] = info.get("running", []) if online else []
        info["counts"] = {_text(k): int(v) for k, v in client.hgetall(_key(name, "counts")).items()}
        info["models"] = [json.loads(v) for v in client.hgetall(_key(name, "models")).values()]
        result.append(info)
    return result


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def live(client: Redis) -> list[dict[str, Any]]:
    return [w for w in all_workers(client) if w["state"] == "online"]


def live_queues(client: Redis) -> set[str]:
    """The queues some online worker consumes from."""
    return {queue for w in live(client) for queue in w.get("queues", [])}
