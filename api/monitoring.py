"""Operators' routes: the worker registry, system stats, and Prometheus metrics."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST

from api import metrics, ratelimit, stats
from api.auth import authenticate
from api.context import ladder
from api.problems import Problem
from shared import workers

bp = Blueprint("monitoring", __name__)


def require_admin() -> None:
    if not authenticate(ladder().db).is_admin:
        raise Problem(403, "this route is for admin keys")


@bp.get("/api/v1/workers")
def list_workers() -> dict[str, Any]:
    require_admin()
    return {"items": workers.all_workers(ladder().redis), "offline_after_s": workers.OFFLINE_AFTER}


@bp.get("/api/v1/stats")
def system_stats() -> dict[str, Any]:
    require_admin()
    ctx = ladder()
    return stats.stats(ctx.db, ctx.redis)


@bp.get("/metrics")
def prometheus() -> Response:
    ctx = ladder()
    require_metrics_token(ctx.settings.metrics_token)
    return Response(metrics.cached(ctx.db, ctx.redis), mimetype=CONTENT_TYPE_LATEST)


def require_metrics_token(wanted: str | None) -> None:
    """With LADDER_METRICS_TOKEN set, a 401 for a scrape without it; unset, /metrics is open
    (to a network that only Prometheus reaches, say)."""
    if wanted is None:
        return
    ratelimit.refuse_failing_address()
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), wanted.encode()):
        return
    if sent:
        ratelimit.count_failure()  # a wrong token is a guess, as at any other door
    raise Problem(
        401,
        "send the metrics token (LADDER_METRICS_TOKEN) as 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": 'Bearer realm="ladder-metrics"'},
    )
