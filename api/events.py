"""Following a job: its status changes from the database, its stream entries from Redis."""

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
from shared import jobs, streams
from shared.models import Job, JobStatus

KEEP_ALIVE_SECONDS = 15


@dataclass(frozen=True)
class Event:
    event: str
    data: dict[str, Any]
    id: str | None = None
    """Stream entries have ids; a client resumes after one with Last-Event-ID."""

    def sse(self) -> str:
        head = f"id: {self.id}\n" if self.id else ""
        return f"{head}event: {self.event}\ndata: {json.dumps(self.data)}\n\n"


def follow(job_id: str, after: str | None) -> Iterator[Event | None]:
    """Events until the job ends: `status` (the job) on each change, stream entries such as
    `token` in order, then `end`. None now and then while nothing happens (for keep-alives)."""
    ctx = ladder()
    block_ms = int(ctx.settings.events_poll_seconds * 1000)
    cursor = after or "0"
    last_state: tuple[str, float] | None = None
    while True:
        job = _load(job_id)
        if job is None:
            return
        state = (job.status, job.progress)
        if state != last_state:
            last_state = state
            yield Event("status", job_json(job))
        finished = JobStatus(job.status).finished
        # Once the job has ended, drain what is left of its stream without waiting.
        entries = _read(job_id, cursor, None if finished else block_ms)
        for entry_id, event, data in entries:
            cursor = entry_id
            yield Event(event, data, entry_id)
        if finished and not entries:
            yield Event("end", {"status": job.status})
            return
        if not entries:
            yield None


def _read(job_id: str, cursor: str, block_ms: int | None) -> list[tuple[str, str, dict[str, Any]]]:
    try:
        return streams.read(ladder().redis, job_id, cursor, block_ms)
    except RedisError:
        # Tokens are a bonus; the row is the truth. Without Redis, follow the status only.
        if block_ms:
            time.sleep(block_ms / 1000)
        return []


def _load(job_id: str) -> Job | None:
    return jobs.find(ladder().db, job_id)


def keep_alive_every(poll_seconds: float) -> int:
    return max(1, int(KEEP_ALIVE_SECONDS / poll_seconds))


def event_stream(job_id: str) -> Response:
    """The job's events as a text/event-stream response, resuming after Last-Event-ID."""
    poll = ladder().settings.events_poll_seconds
    resume = request.headers.get("Last-Event-ID")

    def stream() -> Iterator[str]:
        idle = 0
        for event in follow(job_id, resume):
            if event is not None:
                idle = 0
                yield event.sse()
                continue
            idle += 1
            if idle >= keep_alive_every(poll):  # a comment keeps proxies from closing it
                idle = 0
                yield ": keep-alive\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    # stream_with_context: the generator runs after the view returns and still needs the app.
    return Response(stream_with_context(stream()), mimetype="text/event-stream", headers=headers)
