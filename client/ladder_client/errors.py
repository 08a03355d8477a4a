"""What can go wrong talking to Ladder: a problem the API answered, or no answer at all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class FieldError:
    """One bad field of a request, as a 422 names it: `params.n`, `jobs[17].params.n`."""

    field: str
    message: str


class LadderError(Exception):
    """The API answered with an error: an RFC 9457 problem (`status`, `title`, `detail`,
    `errors`). `status` is None where no answer came (see LadderConnectionError)."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        errors: list[FieldError] | None = None,
        retry_after: float | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.title = title
        self.errors = errors or []
        self.retry_after = retry_after
        self.problem = problem or {}

    def __str__(self) -> str:
        head = f"{self.status} {self.title}: " if self.status and self.title else ""
        return head + self.detail


class LadderConnectionError(LadderError):
    """No answer came: the service cannot be reached, or the connection broke."""


class JobError(LadderError):
    """A job that a call waited on ended without succeeding (a streamed chat's job, say)."""


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the response asks a client to wait (Retry-After in seconds; a date is rare
    enough from Ladder to be read as a second)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return 1.0


def from_response(response: httpx.Response) -> LadderError:
    """The error an unsuccessful response stands for; its body must have been read."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    title = problem.get("title") or response.reason_phrase or "Error"
    detail = problem.get("detail") or response.text.strip()[:300] or title
    errors = [
        FieldError(str(e.get("field", "")), str(e.get("message", "")))
        for e in problem.get("errors") or []
        if isinstance(e, dict)
    ]
    return LadderError(
        str(detail),
        status=response.status_code,
        title=str(title),
        errors=errors,
        retry_after=retry_after(response),
        problem=problem,
    )


def unreachable(url: str, exc: httpx.TransportError) -> LadderConnectionError:
    reason = str(exc) or type(exc).__name__
    return LadderConnectionError(f"cannot reach Ladder at {url}: {reason}")
