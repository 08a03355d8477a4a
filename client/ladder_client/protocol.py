"""What Client and AsyncClient share: the routes, the bodies they send, how answers read, and
when a call is worth another try. Nothing here does I/O, so both clients follow one policy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ladder_client.errors import JobError, LadderConnectionError, LadderError, from_response
from ladder_client.models import Event, Job, JobSpec, Kind

DEFAULT_URL = "http://127.0.0.1:8000"
"""Where `make run` serves."""
API = "/api/v1"
WAIT_STEP = 60
"""The longest long poll the API grants (`GET /api/v1/jobs/{id}?wait=N`, N ≤ 60)."""
READ_SLACK = 15.0
"""Seconds a long poll's read may take beyond its wait before the answer counts as lost."""
STREAM_READ_TIMEOUT = 45.0
"""An event stream sends a keep-alive every 15 s: three missed ones mean the connection died."""
RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that mean "not now" rather than "no": another try later may well work."""
BACKOFF = 0.25
"""The first pause between tries; each later one doubles, up to MAX_PAUSE."""
MAX_PAUSE = 10.0


def job_path(job_id: str) -> str:
    return f"{API}/jobs/{quote(job_id, safe='')}"


def artifact_path(job_id: str, name: str) -> str:
    return f"{job_path(job_id)}/artifacts/{quote(name, safe='')}"


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def submit_body(
    kind: str,
    params: dict[str, Any] | None,
    priority: int | None,
    device: str | None,
    callback_url: str | None,
) -> dict[str, Any]:
    """A submission with only what the caller chose: the API's defaults fill the rest."""
    body: dict[str, Any] = {"kind": kind, "params": params or {}}
    for name, value in [("priority", priority), ("device", device), ("callback_url", callback_url)]:
        if value is not None:
            body[name] = value
    return body


def batch_body(jobs: list[JobSpec]) -> dict[str, Any]:
    return {"jobs": [dict(job) for job in jobs]}


def listing_params(
    kind: str | None, status: str | None, page_size: int | None, cursor: str | None
) -> dict[str, str | int]:
    params: dict[str, str | int] = {}
    for name, value in [
        ("kind", kind),
        ("status", status),
        ("limit", page_size),
        ("cursor", cursor),
    ]:
        if value is not None:
            params[name] = value
    return params


def chat_body(
    messages: list[dict[str, Any]],
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": messages, "stream": True}
    for name, value in [
        ("model", model),
        ("max_tokens", max_tokens),
        ("temperature", temperature),
        ("seed", seed),
    ]:
        if value is not None:
            body[name] = value
    return body


def checked(response: httpx.Response) -> httpx.Response:
    """The response, or the LadderError it stands for; its body must have been read."""
    if response.is_error:
        raise from_response(response)
    return response


def job_of(response: httpx.Response) -> Job:
    return Job.from_json(checked(response).json())


def page_of(response: httpx.Response) -> tuple[list[Job], str | None]:
    body = checked(response).json()
    return [Job.from_json(item) for item in body["items"]], body.get("next_cursor")


def kinds_of(response: httpx.Response) -> list[Kind]:
    return [Kind.from_json(item) for item in checked(response).json()["items"]]


def pause(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait before try `attempt` + 1 (counting from 0): what the server asked for
    when it said, else a doubling backoff; never more than MAX_PAUSE."""
    if retry_after is not None:
        return min(retry_after, MAX_PAUSE)
    return min(BACKOFF * 2**attempt, MAX_PAUSE)


def transient(error: LadderError) -> bool:
    """Whether another try may succeed: no answer came, or the answer was "not now"."""
    return isinstance(error, LadderConnectionError) or error.status in RETRY_STATUSES


def worth_retry(error: LadderError, connection: bool, statuses: bool) -> bool:
    """Whether a call that failed with `error` should be tried again: `connection` when no
    answer came, `statuses` when the answer was "not now". A 503 always is: the API undid
    whatever the request had begun."""
    if error.status is None:
        return connection
    if error.status == 503:
        return True
    return statuses and transient(error)


def wait_step(deadline: float | None) -> int:
    """How long the next long poll may wait: up to WAIT_STEP, never past `deadline`."""
    if deadline is None:
        return WAIT_STEP
    return max(0, min(WAIT_STEP, int(deadline - time.monotonic())))


def chat_delta(data: Any) -> str:
    """The text an OpenAI-style stream chunk adds; a chunk with an `error` raises it."""
    if not isinstance(data, dict):
        return ""
    if "error" in data:
        error = data["error"] if isinstance(data["error"], dict) else {}
        raise JobError(str(error.get("message") or "the completion failed"))
    choices = data.get("choices") or [{}]
    return str((choices[0].get("delta") or {}).get("content") or "")


@dataclass
class Follow:
    """Where a job's event stream is, across the connections it takes to read it all.

    Each event with an id moves `cursor`; a new connection sends it as Last-Event-ID, so a
    dropped connection costs no event and repeats none. The server's `reconnect` event (a
    stream's longest life reached) is followed at once, and not passed on."""

    cursor: str | None
    deadline: float | None
    retries: int
    failures: int = 0
    asked: bool = False

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": self.cursor} if self.cursor else {}

    def read_timeout(self) -> float:
        if self.deadline is None:
            return STREAM_READ_TIMEOUT
        return max(0.05, min(STREAM_READ_TIMEOUT, self.deadline - time.monotonic()))

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def see(self, event: Event) -> bool:
        """Note an event; False for the server's `reconnect`, which is not passed on."""
        self.asked = False
        if event.id:
            # Only an entry moves the stream on: the `status` each connection opens with
            # does not, so a stream that keeps breaking right after it still runs out of tries.
            self.cursor, self.failures = event.id, 0
        if event.event != "reconnect":
            return True
        resume = event.data.get("last_event_id") if isinstance(event.data, dict) else None
        if resume:
            self.cursor = str(resume)
        self.asked = True
        return False

    def after_drop(self, error: LadderError | None) -> float:
        """The pause before the next connection; raises `error` (or a connection error when
        the stream kept closing early) when another try is not worth it."""
        if error is not None and not transient(error):
            raise error
        if self.asked and error is None:
            self.asked = False
            return 0.0
        self.failures += 1
        if self.failures > self.retries:
            raise error or LadderConnectionError(
                "the event stream kept closing before the job ended"
            )
        return pause(self.failures - 1, error.retry_after if error else None)
