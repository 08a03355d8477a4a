"""The jobs part of the HTTP contract: submit, read, list, cancel, follow, and fetch artifacts."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from api.auth import Caller, authenticate
from api.context import ladder
from api.problems import Problem, invalid
from api.representation import job_json, job_url
from api.requests import int_arg, json_body, parse_submit
from shared import jobs, kinds
from shared.kinds import FieldError, InvalidParams
from shared.models import Artifact, Job, JobStatus
from worker.app import TASK_NAME, redis_priority

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")

MAX_IDEMPOTENCY_KEY = 255


@bp.post("/jobs")
def submit() -> tuple[dict[str, Any], int, dict[str, str]]:
    ctx = ladder()
    caller = authenticate(ctx.db)
    body = json_body()
    req = parse_submit(body)
    kind = kinds.get(req.kind)
    if kind is None:
        known = ", ".join(sorted(kinds.registry()))
        raise invalid([FieldError("kind", f"unknown kind {req.kind!r}; known kinds: {known}")])
    try:
        params = kind.parse(req.params, ctx.settings)
    except InvalidParams as exc:
        raise invalid(exc.errors) from None
    queue = kind.pools[0] if req.device == "auto" else req.device
    if queue not in kind.pools:
        pools = ", ".join(kind.pools)
        raise invalid([FieldError("device", f"{kind.name} runs on {pools} only")])

    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise invalid(
            [FieldError("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")]
        )
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    if key is not None and (existing := _by_idempotency_key(caller, key, digest)) is not None:
        return _accepted(existing)

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
            return _accepted(existing)
        raise
    _send(job, kind.name)
    return _accepted(job)


def _by_idempotency_key(caller: Caller, key: str, digest: str) -> Job | None:
    with ladder().db.session() as session:
        job = session.scalars(
            select(Job).where(Job.api_key_id == caller.key_id, Job.idempotency_key == key)
        ).first()
    if job is not None and job.request_hash != digest:
        raise Problem(409, "this Idempotency-Key was used with a different body")
    return job


def _send(job: Job, kind: str) -> None:
    """Queue the committed job; if the broker refuses, undo the row so that nothing half-exists."""
    ctx = ladder()
    limit = ctx.settings.time_limit(kind)
    try:
        ctx.celery.send_task(
            TASK_NAME,
            args=[job.id],
            task_id=job.id,
            queue=job.queue,
            priority=redis_priority(job.priority),
            time_limit=limit,
            soft_time_limit=limit - max(1, limit // 20),
        )
    except Exception:
        current_app.logger.exception("could not queue job %s", job.id)
        with ctx.db.session() as session:
            session.execute(delete(Job).where(Job.id == job.id))
        raise Problem(
            503,
            "the broker is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        ) from None


def _accepted(job: Job) -> tuple[dict[str, Any], int, dict[str, str]]:
    return job_json(job), 202, {"Location": job_url(job.id)}


@bp.get("/jobs/<job_id>")
def get(job_id: str) -> dict[str, Any]:
    return job_json(_visible_job(job_id))


@bp.get("/jobs")
def list_jobs() -> dict[str, Any]:
    ctx = ladder()
    caller = authenticate(ctx.db)
    limit = int_arg("limit", 20, 1, ctx.settings.page_limit)
    query = select(Job).order_by(Job.seq.desc()).limit(limit + 1)
    if not caller.is_admin:
        query = query.where(Job.api_key_id == caller.key_id)
    if kind := request.args.get("kind"):
        query = query.where(Job.kind == kind)
    if status := request.args.get("status"):
        if status not in set(JobStatus):
            allowed = ", ".join(JobStatus)
            raise invalid([FieldError("status", f"must be one of {allowed}")])
        query = query.where(Job.status == status)
    if cursor := request.args.get("cursor"):
        query = query.where(Job.seq < _decode_cursor(cursor))
    with ctx.db.session() as session:
        rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [job_json(job) for job in rows],
        "next_cursor": _encode_cursor(rows[-1].seq) if more else None,
    }


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, seq = text.partition(":")
        if prefix != "seq" or not seq.isdigit():
            raise ValueError(cursor)
        return int(seq)
    except ValueError:
        raise invalid([FieldError("cursor", "is not a cursor this API returned")]) from None


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str) -> dict[str, Any]:
    ctx = ladder()
    job = _visible_job(job_id)
    if not jobs.cancel(ctx.db, job.id):
        raise Problem(409, f"the job has already ended as {_current(job_id).status}")
    # Stop it if a worker holds it. The row already says cancelled and nothing can overwrite
    # that, so a broker that is down only means a running job finishes its work unrecorded.
    try:
        ctx.celery.control.revoke(job.id, terminate=True, signal="SIGTERM")
    except Exception:
        current_app.logger.warning(
            "could not broadcast the revoke of job %s", job.id, exc_info=True
        )
    return job_json(_current(job_id))


@bp.get("/jobs/<job_id>/events")
def events(job_id: str) -> Response:
    """Server-sent events: the job each time its status or progress changes, until it ends."""
    job = _visible_job(job_id)
    ctx = ladder()
    poll = ctx.settings.events_poll_seconds

    def stream() -> Iterator[str]:
        last: tuple[str, float] | None = None
        quiet = 0.0
        current = job
        while True:
            state = (current.status, current.progress)
            if state != last:
                last, quiet = state, 0.0
                yield f"event: status\ndata: {json.dumps(job_json(current))}\n\n"
            if JobStatus(current.status).finished:
                yield "event: end\ndata: {}\n\n"
                return
            if quiet >= 15:  # a comment keeps proxies from closing an idle stream
                quiet = 0.0
                yield ": keep-alive\n\n"
            time.sleep(poll)
            quiet += poll
            current = _current(job_id)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(stream()), mimetype="text/event-stream", headers=headers)


@bp.get("/jobs/<job_id>/artifacts/<name>")
def artifact(job_id: str, name: str) -> Response:
    job = _visible_job(job_id)
    with ladder().db.session() as session:
        found = session.scalars(
            select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name)
        ).first()
    if found is None:
        raise Problem(404, f"job {job_id} has no artifact named {name!r}")
    return Response(
        found.data,
        mimetype=found.content_type,
        headers={"Content-Disposition": f'attachment; filename="{found.name}"'},
    )


@bp.get("/kinds")
def list_kinds() -> dict[str, Any]:
    settings = ladder().settings
    return {
        "items": [
            {
                "name": kind.name,
                "summary": kind.summary,
                "pools": list(kind.pools),
                "params_schema": kind.json_schema(),
                "limits": {
                    **kind.limits(settings),
                    "time_limit_seconds": settings.time_limit(kind.name),
                },
            }
            for kind in kinds.registry().values()
        ]
    }


def _visible_job(job_id: str) -> Job:
    """The job if the caller may see it: its own, or any for an admin; else 404."""
    caller = authenticate(ladder().db)
    job = _find(job_id)
    if job is None or not (caller.is_admin or job.api_key_id == caller.key_id):
        raise Problem(404, f"no job {job_id}")
    return job


def _find(job_id: str) -> Job | None:
    with ladder().db.session() as session:
        return session.scalars(select(Job).where(Job.id == job_id)).first()


def _current(job_id: str) -> Job:
    job = _find(job_id)
    if job is None:
        raise Problem(404, f"no job {job_id}")
    return job
