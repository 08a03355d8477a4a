"""Requests that wait on a job (event streams, long polls, chat completions): what keeps a
thousand of them from taking the service down.

Under gunicorn's gevent worker (gunicorn.conf.py) each waiting request is a greenlet blocked on
Redis, not an OS thread. Three things bound them:

- a per-key limit on waiting requests, counted in Redis across API processes
  (`LADDER_MAX_STREAMS_PER_KEY`); past it, 429. Each slot carries its own expiry, so the slots
  of an API process that died lapse by themselves;
- a longest life for one stream (`LADDER_MAX_STREAM_SECONDS`), after which the client is told
  to reconnect with Last-Event-ID;
- a client that hangs up is noticed at once: a greenlet watches its socket and stops the
  request, which frees its slot (and cancels a streamed chat's job).
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import gevent
from flask import request
from gevent import monkey
from redis.exceptions import RedisError

from api.context import ladder
from api.problems import Problem

log = logging.getLogger(__name__)


class ClientGone(BaseException):
    """The client closed its connection while its request was waiting.

    A BaseException, as gevent's own GreenletExit is: thrown into a request blocked on Redis
    or the database, it makes redis-py drop that connection and SQLAlchemy invalidate its
    own, rather than hand a half-read one back to the pool."""


def _slots_key(key_id: int) -> str:
    return f"ladder:waiting:{key_id}"


class Slot:
    """One of a key's waiting slots, taken by `take` and given back by `release`."""

    def __init__(self, key_id: int) -> None:
        self.name, self.member = _slots_key(key_id), uuid.uuid4().hex
        # Kept: a response gives its slot back when the server closes it, outside the app.
        self._redis = ladder().redis

    def take(self, seconds: float | None = None) -> None:
        """Take the slot for at most `seconds` (an event stream's longest life unless given),
        or raise a 429 problem when the key holds all of its slots."""
        ctx = ladder()
        limit = ctx.settings.max_streams_per_key
        life = int(seconds or ctx.settings.max_stream_seconds)
        now = time.time()
        try:
            pipe = self._redis.pipeline()
            pipe.zremrangebyscore(self.name, "-inf", now)  # slots of API processes that died
            pipe.zadd(self.name, {self.member: now + life + 60})
            pipe.zcard(self.name)
            pipe.expire(self.name, life + 60)
            held = int(pipe.execute()[2])
        except RedisError:
            log.warning("could not count a waiting request; letting it through", exc_info=True)
            return
        if held > limit:
            self.release()
            raise Problem(
                429,
                f"this API key has {limit} streams and waits open, its limit "
                "(LADDER_MAX_STREAMS_PER_KEY); close one first",
                headers={"Retry-After": "5"},
            )

    def release(self) -> None:
        try:
            self._redis.zrem(self.name, self.member)
        except RedisError:  # it expires by itself
            log.warning("could not free a waiting slot", exc_info=True)


@contextmanager
def slot(key_id: int, seconds: float) -> Iterator[None]:
    """Hold one of the key's waiting slots for the block (a long poll, a chat completion),
    which lasts at most `seconds`."""
    held = Slot(key_id)
    held.take(seconds)
    try:
        yield
    finally:
        held.release()


class Hangup:
    """Watches the current request's client; `gone` once it has closed the connection."""

    def __init__(self) -> None:
        self.gone = False
        self._watcher: gevent.Greenlet | None = None
        sock = request.environ.get("gunicorn.socket")
        if sock is not None and monkey.is_module_patched("socket"):
            self._watcher = gevent.spawn(self._watch, sock, gevent.getcurrent())

    def _watch(self, sock: socket.socket, waiter: Any) -> None:
        try:
            while sock.recv(1, socket.MSG_PEEK):
                gevent.sleep(1)  # the client sent something (nothing we read): look again
        except (OSError, ValueError):  # ValueError: a TLS socket refuses MSG_PEEK
            pass
        if self._watcher is not None:  # stop() was not called meanwhile
            self.gone = True
            gevent.kill(waiter, ClientGone)

    def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            # Wait for it to go: the server reads the connection's next request right after.
            watcher.kill(block=True)
        if self.gone:
            # Its ClientGone may not have landed yet (the request saw `gone` first): take it
            # now, so that it cannot break the clean-up that follows.
            with suppress(ClientGone):
                gevent.sleep(0)


@contextmanager
def watching() -> Iterator[Hangup]:
    """Watch the current request's client for the block; a hang-up ends the block quietly and
    leaves `gone` set on the Hangup it yields, for the caller to act on."""
    hangup = Hangup()
    try:
        yield hangup
    except ClientGone:
        pass
    finally:
        hangup.stop()
