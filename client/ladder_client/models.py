"""What the API hands back, typed: jobs, events, kinds, and what a batch submit takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobSpec(TypedDict):
    """One job of `submit_many`, as `POST /api/v1/jobs/batch` takes it."""

    kind: str
    params: dict[str, Any]
    priority: NotRequired[int]
    device: NotRequired[str]
    callback_url: NotRequired[str]


@dataclass(frozen=True)
class Job:
    """A job as the API shows it. A listing's jobs are brief: no `params` or `result`, but a
    `summary`. `raw` keeps the whole document, fields newer than this SDK included."""

    id: str
    kind: str
    status: str
    params: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    summary: str | None = None
    error: dict[str, Any] | None = None
    priority: int | None = None
    device: str | None = None
    queue: str | None = None
    attempts: int = 0
    worker: str | None = None
    progress: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled): it changes no more."""
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(
            id=str(data["id"]),
            kind=str(data.get("kind", "")),
            status=str(data.get("status", "")),
            params=data.get("params"),
            result=data.get("result"),
            summary=data.get("summary"),
            error=data.get("error"),
            priority=data.get("priority"),
            device=data.get("device"),
            queue=data.get("queue"),
            attempts=int(data.get("attempts") or 0),
            worker=data.get("worker"),
            progress=data.get("progress"),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            raw=data,
        )


@dataclass(frozen=True)
class Event:
    """One server-sent event of a job: `status` (the whole job), `progress`, `token`,
    `stage`, …, and `end` last. `id` is set on the entries a stream can resume after."""

    event: str
    data: Any
    id: str | None = None

    @property
    def ends_stream(self) -> bool:
        """Whether this is the stream's last event: the server's `end`, which carries the
        job's final status and no id. (A generation's own `end` entry, with its
        finish_reason, has an id and is followed by more.)"""
        return self.event == "end" and self.id is None


@dataclass(frozen=True)
class Kind:
    """A job kind this service runs: its params' JSON Schema, its pools and limits."""

    name: str
    summary: str
    pools: list[str]
    params_schema: dict[str, Any]
    limits: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Kind:
        return cls(
            name=str(data["name"]),
            summary=str(data.get("summary", "")),
            pools=list(data.get("pools") or []),
            params_schema=dict(data.get("params_schema") or {}),
            limits=dict(data.get("limits") or {}),
        )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
