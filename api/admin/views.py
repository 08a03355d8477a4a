"""The dashboard's pages, the JSON they poll every two seconds, and its two actions."""

from __future__ import annotations

import json
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import load_only
from werkzeug.wrappers import Response as BaseResponse

from api import artifacts, ratelimit, security, stats, submission
from api.admin.session import admin_page, csrf_token, current_admin, sign_in
from api.auth import authenticate
from api.context import ladder
from api.events import event_stream
from api.info import retention_policy
from api.problems import Problem
from api.representation import BRIEF_COLUMNS, job_brief, job_json
from api.requests import parse_submit
from shared import explorer, jobs, kinds, streams, workers
from shared.models import Artifact, Job, JobStatus
from shared.producer import BrokerUnavailable

bp = Blueprint(
    "admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static"
)

# The pages load only what this server serves: no CDN, no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@bp.after_request
def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.context_processor
def template_globals() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token,
        "kinds": sorted(kinds.enabled()),
        "statuses": list(JobStatus),
    }


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse | tuple[str, int]:
    if request.method == "GET":
        return render_template("admin/login.html", error=None)
    # No session yet, so no CSRF token: the browser's own word on where the form came from.
    security.require_same_origin()
    ratelimit.refuse_failing_address()
    caller = sign_in(request.form.get("token", "").strip())
    if caller is None or not caller.is_admin:
        ratelimit.count_failure()
    if caller is None:
        return render_template("admin/login.html", error="That token is not a valid key."), 401
    if not caller.is_admin:
        return render_template("admin/login.html", error="That key is not an admin key."), 403
    target = request.args.get("next", "")
    # Only a path of this dashboard: never an open redirect.
    return redirect(target if target.startswith("/admin") else url_for("admin.overview"))


@bp.post("/logout")
@admin_page
def logout() -> BaseResponse:
    session.clear()
    return redirect(url_for("admin.login"))


@bp.get("/")
@admin_page
def overview() -> str:
    settings = ladder().settings
    return render_template("admin/overview.html", retention=retention_policy(settings),
                           purge_every=settings.purge_every)  # fmt: skip


@bp.get("/jobs")
@admin_page
def jobs_page() -> str | BaseResponse:
    wanted = request.args.get("id", "").strip()
    if wanted:
        return redirect(url_for("admin.job_page", job_id=wanted))
    return render_template("admin/jobs.html", kind=request.args.get("kind", ""),
                           status=request.args.get("status", ""), new_kind="stairs",
                           new_params='{"n": 10}', error=None)  # fmt: skip


@bp.post("/jobs")
@admin_page
def submit() -> str | BaseResponse | tuple[str, int]:
    """Submit a job from the dashboard, as the signed-in admin key."""
    caller = current_admin() or authenticate(ladder().db)
    kind, raw = request.form.get("kind", ""), request.form.get("params", "") or "{}"
    try:
        params = json.loads(raw)
        body = {"kind": kind, "params": params}
        job = submission.submit(caller, parse_submit(body), body, None)
    except ValueError:
        return _jobs_page(kind, raw, "params is not valid JSON"), 400
    except Problem as problem:
        return _jobs_page(kind, raw, problem.detail), problem.status
    return redirect(url_for("admin.job_page", job_id=job.id))


def _jobs_page(kind: str, params: str, error: str) -> str:
    return render_template("admin/jobs.html", kind="", status="", new_kind=kind,
                           new_params=params, error=error)  # fmt: skip


@bp.get("/jobs/<job_id>")
@admin_page
def job_page(job_id: str) -> str | tuple[str, int]:
    job = _job(job_id)
    if job is None:
        return render_template("admin/missing.html", job_id=job_id), 404
    return render_template("admin/job.html", job=job_json(job))


@bp.get("/workers")
@admin_page
def workers_page() -> str:
    return render_template("admin/workers.html")


@bp.post("/jobs/<job_id>/cancel")
@admin_page
def cancel(job_id: str) -> BaseResponse:
    job = _job(job_id)
    if job is None:
        raise Problem(404, f"no job {job_id}")
    submission.cancel(job)  # a job that had already ended stays as it was
    return redirect(url_for("admin.job_page", job_id=job_id))


@bp.post("/jobs/<job_id>/retry")
@admin_page
def retry(job_id: str) -> BaseResponse:
    ctx = ladder()
    if jobs.retry(ctx.db, job_id):
        job = _job(job_id)
        try:
            ctx.redis.delete(streams.stream_key(job_id), streams.status_key(job_id),
                             streams.cancel_key(job_id))  # fmt: skip
            streams.publish_status(ctx.redis, job_id, JobStatus.QUEUED)
            if job is not None:
                ctx.producer.send(job.id, job.kind, job.queue, job.priority)
        except (BrokerUnavailable, RedisError):
            # The row is queued again either way; the reconciler re-sends what never left.
            current_app.logger.warning("could not queue the retry of %s", job_id, exc_info=True)
    return redirect(url_for("admin.job_page", job_id=job_id))


# JSON for the pages' live parts -------------------------------------------------------------


@bp.get("/api/overview")
@admin_page
def overview_data() -> dict[str, Any]:
    ctx = ladder()
    with ctx.db.session() as s:
        failures = s.scalars(
            select(Job)
            .options(load_only(*BRIEF_COLUMNS))
            .where(Job.status == JobStatus.FAILED)
            .order_by(Job.seq.desc())
            .limit(8)
        ).all()
    return {
        "stats": stats.stats(ctx.db, ctx.redis),
        "workers": workers.all_workers(ctx.redis),
        "throughput": stats.throughput_series(ctx.db),
        "failures": [job_brief(j) for j in failures],
    }


@bp.get("/api/jobs")
@admin_page
def jobs_data() -> dict[str, Any]:
    query = select(Job).options(load_only(*BRIEF_COLUMNS)).order_by(Job.seq.desc()).limit(50)
    if kind := request.args.get("kind"):
        query = query.where(Job.kind == kind)
    if status := request.args.get("status"):
        query = query.where(Job.status == status)
    with ladder().db.session() as s:
        return {"items": [job_brief(j) for j in s.scalars(query)]}


@bp.get("/api/jobs/<job_id>")
@admin_page
def job_data(job_id: str) -> dict[str, Any]:
    job = _job(job_id)
    if job is None:
        raise Problem(404, f"no job {job_id}")
    with ladder().db.session() as s:
        names = s.scalars(select(Artifact.name).where(Artifact.job_id == job_id)).all()
    return {**job_json(job), "artifacts": list(names)}


@bp.get("/api/workers")
@admin_page
def workers_data() -> dict[str, Any]:
    return {"items": workers.all_workers(ladder().redis)}


@bp.get("/jobs/<job_id>/events")
@admin_page
def job_events(job_id: str) -> Response:
    if _job(job_id) is None:
        raise Problem(404, f"no job {job_id}")
    viewer = current_admin() or authenticate(ladder().db)
    return event_stream(job_id, viewer.key_id)


@bp.get("/jobs/<job_id>/artifacts/<name>")
@admin_page
def artifact(job_id: str, name: str) -> Response:
    return artifacts.send(job_id, name, download=False)


EXPLORER_ASSETS = {"explorer.js": "text/javascript", "explorer.css": "text/css"}


@bp.get("/explorer/<name>")
@admin_page
def explorer_asset(name: str) -> Response:
    """The attention explorer's script and style, the same files explorer.html holds inline."""
    mimetype = EXPLORER_ASSETS.get(name)
    if mimetype is None:
        raise Problem(404, f"the explorer has no file named {name!r}")
    return Response((explorer.ASSETS / name).read_text(encoding="utf-8"), mimetype=mimetype)


def _job(job_id: str) -> Job | None:
    return jobs.find(ladder().db, job_id)
