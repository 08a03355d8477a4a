"""Operators' routes: the worker registry, system stats, and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api import metrics, stats
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
    return Response(metrics.render(ctx.db, ctx.redis), mimetype=CONTENT_TYPE_LATEST)
