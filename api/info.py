"""`GET /api/v1/info`: how long this service keeps ended jobs, and the caller's limits."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from api import submission
from api.auth import Caller, authenticate
from api.context import ladder
from api.requests import MAX_BATCH
from shared.config import Settings, format_duration
from shared.models import JobStatus
from shared.producer import HIGHEST

API_VERSION = "1.0.0"
"""The HTTP contract's version, as /openapi.json states it."""

bp = Blueprint("info", __name__)


def retention_policy(settings: Settings) -> dict[str, dict[str, Any]]:
    """How long each ended status is kept after it ended: seconds (0: forever) and in words."""
    policy = {}
    for status in (s for s in JobStatus if s.finished):
        seconds = settings.retention.get(status, 0)
        policy[str(status)] = {
            "seconds": seconds,
            "duration": format_duration(seconds) if seconds else "forever",
        }
    return policy


def limits(caller: Caller, settings: Settings) -> dict[str, int]:
    """The limits that apply to this caller's key, its own overrides included."""
    ceiling = submission.max_priority(caller)
    return {
        "max_active_jobs": submission.max_active(caller),
        "max_priority": HIGHEST if ceiling is None else ceiling,
        "max_inline_result_bytes": settings.max_inline_result_bytes,
        "max_body_bytes": settings.max_body_bytes,
        "max_batch": MAX_BATCH,
        "rate_limit_per_minute": settings.rate_limit,
    }


@bp.get("/api/v1/info")
def info() -> dict[str, Any]:
    ctx = ladder()
    caller = authenticate(ctx.db)
    return {
        "version": API_VERSION,
        "retention": retention_policy(ctx.settings),
        "purge_every_s": ctx.settings.purge_every,
        "limits": limits(caller, ctx.settings),
    }
