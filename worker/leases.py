"""Who is running a job right now: a short-lived key in Redis, kept fresh while an attempt runs.

The database says a job is `running`; only a lease says whether someone still is. A message
the broker hands out a second time (a job outlasting the visibility timeout, a copy the
reconciler sent) finds the lease and is dropped, so a job never runs twice at once. A lease
lapses TTL seconds after its process dies, and at once for a pool child that died on this host,
whose parent's broker hands its message straight back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from redis.client import Pipeline
from redis.exceptions import WatchError

from shared.streams import Redis

log = logging.getLogger(__name__)

TTL = 30
"""Seconds a lease outlives its last renewal; renewed every TTL / 6 s, so a process stuck
without the GIL for a few seconds keeps its lease."""


def _key(job_id: str) -> str:
    return f"ladder:lease:{job_id}"


def holder(client: Redis, job_id: str) -> str | None:
    """The worker running this job now, or None when nobody is."""
    raw = client.get(_key(job_id))
    return None if raw is None or _dead_here(raw) else str(json.loads(raw)["worker"])


class Lease:
    """This process's hold on a job; renewed in the background until the block ends."""

    def __init__(self, client: Redis, job_id: str, value: str) -> None:
        self._client, self._key, self._value = client, _key(job_id), value
        self._held = False

    def __enter__(self) -> Lease:
        _RENEWER.hold(self._client, self._key, self._value)
        self._held = True
        return self

    def __exit__(self, *_: object) -> None:
        if self._held:
            try:
                self.release()
            except Exception:  # it lapses by itself
                log.warning("could not release %s", self._key, exc_info=True)

    def release(self, pipe: Pipeline | None = None) -> None:
        """Give the lease back if it is still ours; queued on `pipe` when one is given, so that
        it costs no round trip of its own."""
        _RENEWER.drop(self._key)  # first: no renewal may bring it back after the delete
        self._held = False
        (pipe or self._client).eval(_RELEASE, 1, self._key, self._value)


class _Renewer:
    """One thread a process renews every lease the process holds, every TTL / 6 s. A thread of
    its own for each job cost a small job about a sixth of its time."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Redis, str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, client: Redis, key: str, value: str) -> None:
        with self._lock:
            self._held[key] = (client, value)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="leases", daemon=True)
                self._thread.start()

    def drop(self, key: str) -> None:
        # The lock waits out a renewal under way, which could otherwise set the key again.
        with self._lock:
            self._held.pop(key, None)

    def forget_all(self) -> None:
        """After a fork: the parent's leases and thread are not this process's."""
        self._held, self._lock, self._thread = {}, threading.Lock(), None

    def _loop(self) -> None:
        while True:
            time.sleep(TTL / 6)
            with self._lock:
                for key, (client, value) in list(self._held.items()):
                    try:
                        # A plain SET: after a Redis restart that lost it, the lease comes back.
                        client.set(key, value, ex=TTL)
                    except Exception:  # Redis away for a moment: the next round tries again
                        log.warning("could not renew %s", key, exc_info=True)


_RENEWER = _Renewer()
os.register_at_fork(after_in_child=_RENEWER.forget_all)


_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
"""Delete the lease only if it is still the one this process took: one atomic step. Sent as
EVAL (Redis caches it): EVALSHA on a pipeline would cost a SCRIPT EXISTS round trip first."""


def take(client: Redis, job_id: str, worker: str) -> Lease | None:
    """The job's lease, or None (and a warning) when another live process holds it."""
    key = _key(job_id)
    value = json.dumps({"worker": worker, "host": socket.gethostname(), "pid": os.getpid()})
    if client.set(key, value, nx=True, ex=TTL):
        return Lease(client, job_id, value)
    current = client.get(key)
    if current is not None and _dead_here(current) and _swap(client, key, current, value):
        log.info("job %s: took over the lease of a pool process that died", job_id)
        return Lease(client, job_id, value)
    log.warning("job %s is running on %s; this copy of its message is dropped", job_id,
                holder(client, job_id))  # fmt: skip
    return None


def _swap(client: Redis, key: str, old: bytes | str, new: str | None) -> bool:
    """Replace (or delete) the lease only if it is still `old`: one check-and-set."""
    with client.pipeline() as pipe:
        try:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            current = pipe.get(key)
            if current is None or _text(current) != _text(old):
                return False
            pipe.multi()
            if new is None:
                pipe.delete(key)
            else:
                pipe.set(key, new, ex=TTL)
            pipe.execute()
            return True
        except WatchError:
            return False


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dead_here(raw: bytes | str) -> bool:
    """A lease held by a process of this host that no longer exists."""
    try:
        lease = json.loads(raw)
        host, pid = lease["host"], int(lease["pid"])
    except (ValueError, KeyError, TypeError):
        return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process by that number: alive
        return False
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    # A pool child killed with its parent can linger unreaped (in a container whose first
    # process reaps nothing): it answers signal 0, but it is dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
