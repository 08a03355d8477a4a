"""Turning a validated request into a committed, queued job: routing, idempotency, sending."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from api.auth import Caller
from api.context import ladder
from api.problems import Problem, invalid
from api.requests import SubmitRequest
from shared import jobs, kinds, streams, workers
from shared.kinds import FieldError, InvalidParams, Kind
from shared.models import Job, JobStatus
from worker.app import enqueue

MAX_IDEMPOTENCY_KEY = 255


def submit(caller: Caller, req: SubmitRequest, body: Any, key: str | None) -> Job:
    """Validate, route, commit and queue a job; the existing job for a repeated key and body."""
    ctx = ladder()
    kind = kinds.get(req.kind)
    if kind is None:
        known = ", ".join(sorted(kinds.registry()))
        raise invalid([FieldError("kind", f"unknown kind {req.kind!r}; known kinds: {known}")])
    try:
        params = kind.parse(req.params, ctx.settings)
    except InvalidParams as exc:
        raise invalid(exc.errors) from None
    queue = route(kind, req.device, params)
    errors = [FieldError(f"params.{e.field}", e.message) for e in kind.check_device(params, queue)]
    if errors:
        raise invalid(errors)
    if key is not None and not (
        0 < len(key) <= MAX_IDEMPOTENCY_KEY and all(" " <= c <= "~" for c in key)
    ):
        message = f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        raise invalid([FieldError("Idempotency-Key", message)])
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    if key is not None and (existing := _by_idempotency_key(caller, key, digest)) is not None:
        return existing
    job = Job(
        id=str(uuid.uuid4()),
        api_key_id=caller.key_id,
        kind=kind.name,
        status=JobStatus.QUEUED,
        params=params.model_dump(mode="json"),
        priority=req.priority,
        device=req.device,
        queue=queue,
        idempotency_key=key,
        request_hash=digest if key is not None else None,
    )
    try:
        with ctx.db.session() as session:
            session.add(job)
    except IntegrityError:
        # Another request with the same Idempotency-Key committed first.
        if key is not None and (existing := _by_idempotency_key(caller, key, digest)) is not None:
            return existing
        raise
    send(job)
    return job


def route(kind: Kind, device: str, params: Any) -> str:
    """The queue for a job: `auto` takes the kind's first pool that has a live worker and can
    run these params (an fp32 generation goes to the CPU even when a GPU worker is up).

    A GPU asked for with no GPU worker online is refused now rather than left waiting forever.
    """
    if device != "auto" and device not in kind.pools:
        raise invalid([FieldError("device", f"{kind.name} runs on {', '.join(kind.pools)} only")])
    if len(kind.pools) == 1 and device == "auto":
        return kind.pools[0]  # nothing to choose: no need to ask Redis
    live = workers.live_pools(ladder().redis)
    if device == "auto":
        able = [pool for pool in kind.pools if not kind.check_device(params, pool)] or [
            kind.pools[0]
        ]
        # With no able pool live, queue where waiting is fine: anywhere but an absent GPU.
        waiting = next((pool for pool in able if pool != "gpu"), able[0])
        chosen = next((pool for pool in able if pool in live), waiting)
    else:
        chosen = device
    if chosen == "gpu" and "gpu" not in live:
        field = "device" if device == "gpu" else "params"
        raise invalid([FieldError(field, "no GPU worker is online to run this; use cpu")])
    return chosen


def cancel(job: Job) -> bool:
    """Cancel a queued or running job; False when it had already ended.

    The row says cancelled first, and nothing can overwrite that; what follows only stops the
    work sooner, so a broker that is down is logged, not a failed cancel.
    """
    ctx = ladder()
    if not jobs.cancel(ctx.db, job.id):
        return False
    kind = kinds.get(job.kind)
    try:
        streams.request_cancel(ctx.redis, job.id)  # a kind that stops itself sees this
        if kind is None or not kind.stops_itself:
            ctx.celery.control.revoke(job.id, terminate=True, signal="SIGTERM")
    except Exception:
        current_app.logger.warning("could not signal the cancel of job %s", job.id, exc_info=True)
    return True


def _by_idempotency_key(caller: Caller, key: str, digest: str) -> Job | None:
    with ladder().db.session() as session:
        job = session.scalars(
            select(Job).where(Job.api_key_id == caller.key_id, Job.idempotency_key == key)
        ).first()
    if job is not None and job.request_hash != digest:
        raise Problem(409, "this Idempotency-Key was used with a different body")
    return job


def send(job: Job) -> None:
    """Queue the committed job; if the broker refuses, undo the row so that nothing half-exists."""
    ctx = ladder()
    try:
        enqueue(ctx.celery, job.id, job.kind, job.queue, job.priority)
    except Exception:
        current_app.logger.exception("could not queue job %s", job.id)
        with ctx.db.session() as session:
            session.execute(delete(Job).where(Job.id == job.id))
        raise Problem(
            503, "the broker is unavailable; try again shortly", headers={"Retry-After": "5"}
        ) from None
