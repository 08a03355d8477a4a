"""The jobs part of the HTTP contract: submit, read, list, cancel, follow, and fetch artifacts."""

from __future__ import annotations

import base64
import dataclasses
import re
from typing import Any

from flask import Blueprint, Response, g, request
from sqlalchemy import select
from sqlalchemy.orm import load_only

from api import artifacts, submission
from api.auth import authenticate
from api.context import ladder
from api.events import event_stream, wait_for_end
from api.problems import Problem, invalid
from api.representation import BRIEF_COLUMNS, job_brief, job_json, job_url
from api.requests import int_arg, json_body, parse_batch, parse_submit
from api.waiting import slot, watching
from shared import jobs, kinds
from shared.kinds import FieldError
from shared.models import Job, JobStatus

bp = Blueprint("jobs", __name__, url_prefix="/api/v1")
MAX_WAIT_SECONDS = 60
"""The longest long poll (`GET /api/v1/jobs/{id}?wait=N`)."""
PAGE_SIZE = 20
"""Jobs a listing page holds unless `limit` says otherwise."""
KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@bp.post("/jobs")
def submit() -> tuple[dict[str, Any], int, dict[str, str]]:
    caller = authenticate(ladder().db)
    body = json_body()
    job = submission.submit(
        caller, parse_submit(body), body, request.headers.get("Idempotency-Key")
    )
    return job_json(job), 202, {"Location": job_url(job.id)}


@bp.post("/jobs/batch")
def submit_batch() -> tuple[dict[str, Any], int]:
    """Up to MAX_BATCH jobs at once: all validated first (a 422 names `jobs[i]…` and makes
    nothing), then made in one transaction and queued in one Redis pipeline."""
    caller = authenticate(ladder().db)
    body = json_body()
    batch = parse_batch(body)
    made = submission.submit_batch(caller, batch.jobs, body, request.headers.get("Idempotency-Key"))
    return {"items": [job_json(job) for job in made]}, 202


@bp.get("/jobs/<job_id>")
def get(job_id: str) -> dict[str, Any]:
    """One job; with `wait=N`, a long poll: the answer comes when the job ends or N s pass."""
    job = _visible_job(job_id)
    wait = int_arg("wait", 0, 0, MAX_WAIT_SECONDS)
    if wait and not JobStatus(job.status).finished:
        with slot(g.caller.key_id, wait), watching():  # a hang-up: nobody is left to answer
            job = wait_for_end(job.id, wait) or job
    return job_json(job)


@bp.get("/jobs")
def list_jobs() -> dict[str, Any]:
    ctx = ladder()
    caller = authenticate(ctx.db)
    limit = int_arg("limit", PAGE_SIZE, 1, ctx.settings.page_limit)
    query = select(Job).options(load_only(*BRIEF_COLUMNS)).order_by(Job.seq.desc()).limit(limit + 1)
    if not caller.is_admin:
        query = query.where(Job.api_key_id == caller.key_id)
    if kind := request.args.get("kind"):
        # A kind retired from this installation may still have jobs: any well-formed name goes.
        if not KIND_NAME.match(kind):
            raise invalid([FieldError("kind", "is not a kind name (a-z, 0-9, _; up to 32)")])
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
        "items": [job_brief(job) for job in rows],
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
    job = _visible_job(job_id)
    if not submission.cancel(job):
        raise Problem(409, f"the job has already ended as {_current(job_id).status}")
    return job_json(_current(job_id))


@bp.get("/jobs/<job_id>/events")
def events(job_id: str) -> Response:
    """Server-sent events until the job ends; resumable after a stream entry's id."""
    _visible_job(job_id)
    return event_stream(job_id, g.caller.key_id)


@bp.get("/jobs/<job_id>/artifacts/<name>")
def artifact(job_id: str, name: str) -> Response:
    return artifacts.send(_visible_job(job_id).id, name, download=True)


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
                    **dataclasses.asdict(kind.limits(settings)),
                    "time_limit_seconds": kind.time_limit_for(settings),
                },
            }
            for kind in kinds.enabled().values()
        ]
    }


def _visible_job(job_id: str) -> Job:
    """The job if the caller may see it: its own, or any for an admin; else 404."""
    caller = authenticate(ladder().db)
    job = jobs.find(ladder().db, job_id)
    if job is None or not (caller.is_admin or job.api_key_id == caller.key_id):
        raise Problem(404, f"no job {job_id}")
    return job


def _current(job_id: str) -> Job:
    job = jobs.find(ladder().db, job_id)
    if job is None:
        raise Problem(404, f"no job {job_id}")
    return job
