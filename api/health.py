"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import text

from api.context import ladder
from api.problems import PROBLEM_JSON

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up; says nothing of its dependencies."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Ready when the database answers and the broker accepts a connection."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}, 200, {}
    failing = ", ".join(k for k, v in checks.items() if v != "ok")
    body = {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": f"not ready: {failing} unavailable",
        "checks": checks,
    }
    return body, 503, {"Content-Type": PROBLEM_JSON, "Retry-After": "5"}


def _check_database() -> str:
    try:
        with ladder().db.engine.connect() as connection:
            connection.execute(text("SELECT 1 FROM jobs LIMIT 1"))
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _check_broker() -> str:
    try:
        ladder().producer.ping()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
