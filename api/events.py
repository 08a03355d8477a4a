"""Following a job: its Redis stream as it happens, its row when the follow starts and ends.

A follower blocks on the job's stream (shared/streams.py), where workers, cancels and retries
write a `status` entry after each change of the row, and runners their own entries (`token`,
`stage`, `progress`). The row is read when the follow starts, when a status says the job has
ended, and, in case that entry was lost (a Redis restart), after every CHECK_EVERY quiet reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, request, stream_with_context
from redis import RedisError

from api.context import ladder
from api.representation import job_json
from api.waiting import Slot, watching
from shared import jobs, streams
from shared.models import Job, JobStatus

BLOCK_SECONDS = 5.0
"""The longest one read of a stream waits; the Redis client's socket timeout (10 s) outlasts it."""
CHECK_EVERY = 3
"""Quiet reads between looks at the row, each followed by a keep-alive: one every 15 s."""


@dataclass(frozen=True)
class Event:
    event: str
    data: dict[str, Any]
    id: str | None = None
    """Stream entries have ids; a client resumes after one with Last-Event-ID."""

    def sse(self) -> str:
        head = f"id: {self.id}\n" if self.id else ""
        return f"{head}event: {self.event}\ndata: {json.dumps(self.data)}\n\n"


def follow(
    job_id: str, after: str | None, until: float | None = None, statuses: bool = False
) -> Iterator[Event | None]:
    """The job's events until it ends: `status` (the whole job) first and on each change, the
    stream's other entries in order, then `end`. None after a quiet while (for keep-alives).
    Past `until` (time.monotonic), `reconnect` instead of `end`: resume with Last-Event-ID.
    With `statuses`, only the status changes (from their own stream, so no token wakes it)."""
    job = _load(job_id)
    if job is None:
        return
    view = job_json(job)
    yield Event("status", view)
    cursor = after or "0"
    final = job if JobStatus(job.status).finished else None
    ended, quiet = final is not None, 0
    while True:
        block = None if ended else _block_ms(until)
        if block == 0:
            yield Event("reconnect", {"reason": "this stream reached its longest life",
                                      "last_event_id": cursor})  # fmt: skip
            return
        entries = _read(job_id, cursor, block, statuses)
        for entry_id, event, data in entries:
            cursor = entry_id
            if event != "status":
                yield Event(event, data, entry_id)
            elif JobStatus(data.get("status", JobStatus.RUNNING)).finished:
                ended = True
            elif not ended and {**view, **data} != view:
                view = {**view, **data}
                yield Event("status", view, entry_id)
        if entries:
            quiet = 0
            continue
        if ended:  # and the stream is drained: the row has the last word
            final = final or _load(job_id)
            if final is None:
                return
            if not JobStatus(final.status).finished:
                # An entry said it ended, the row says not (an old entry of a retried job):
                # the row is the truth, so follow on.
                final, ended = None, False
                continue
            if job_json(final) != view:
                yield Event("status", job_json(final))
            yield Event("end", {"status": final.status})
            return
        quiet += 1
        if quiet % CHECK_EVERY == 0:
            job = _load(job_id)
            if job is None:
                return
            if JobStatus(job.status).finished:  # its entry never came
                final, ended = job, True
                continue
            yield None


def wait_for_end(job_id: str, seconds: float) -> Job | None:
    """The job once it has ended, or as it is after `seconds`: a long poll's answer."""
    try:
        # Where the stream is now, read before the row: an end after the row is read is seen.
        latest: Any = ladder().redis.xrevrange(streams.status_key(job_id), count=1)
        after = latest[0][0].decode() if latest else "0"
    except RedisError:
        after = "0"
    until = time.monotonic() + seconds
    for _ in follow(job_id, after, until, statuses=True):
        pass  # it returns once the job has ended, or at `until`
    return _load(job_id)


def _block_ms(until: float | None) -> int:
    if until is None:
        return int(BLOCK_SECONDS * 1000)
    left = until - time.monotonic()
    return 0 if left <= 0 else max(1, int(min(left, BLOCK_SECONDS) * 1000))


def _read(
    job_id: str, cursor: str, block_ms: int | None, statuses: bool
) -> list[tuple[str, str, dict[str, Any]]]:
    try:
        return streams.read(ladder().redis, job_id, cursor, block_ms, statuses)
    except RedisError:
        # Tokens are a bonus; the row is the truth. Without Redis, wait, then look at the row.
        if block_ms:
            time.sleep(block_ms / 1000)
        return []


def _load(job_id: str) -> Job | None:
    return jobs.find(ladder().db, job_id)


def event_stream(job_id: str, key_id: int) -> Response:
    """The job's events as a text/event-stream response, resuming after Last-Event-ID; one of
    the key's waiting slots while it is open."""
    held = Slot(key_id)
    held.take()
    resume = request.headers.get("Last-Event-ID")
    until = time.monotonic() + ladder().settings.max_stream_seconds

    def stream() -> Iterator[str]:
        with watching() as hangup:
            for event in follow(job_id, resume, until):
                if hangup.gone:
                    return
                # A comment now and then keeps proxies from closing a quiet stream.
                yield ": keep-alive\n\n" if event is None else event.sse()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    # stream_with_context: the generator runs after the view returns and still needs the app.
    response = Response(stream_with_context(stream()), mimetype="text/event-stream",
                        headers=headers)  # fmt: skip
    response.call_on_close(held.release)
    return response
