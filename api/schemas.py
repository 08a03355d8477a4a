"""What the API answers, as pydantic models: `/openapi.json` is built from them.

The routes build their bodies as plain dicts; these models describe those dicts for the
document, and the unit tests check that the two agree. Class names are the component names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from api.requests import Device, Priority
from shared.kinds import FieldError
from shared.models import JobStatus


class JobError(BaseModel):
    """Why a job failed: a stable code and a message for people."""

    code: str = Field(description="Such as invalid_params, timeout, worker_lost, internal.")
    message: str


class WebhookAttempt(BaseModel):
    """One attempt at delivering a job's webhook."""

    at: datetime
    status: int | None = Field(description="The receiver's HTTP status; none if no answer.")
    error: str | None = Field(
        description="Why the attempt failed (an HTTP status that is not 2xx, a redirect, which "
        "is not followed, a timeout, a refused address); none when it was delivered."
    )
    duration_ms: float


class Webhook(BaseModel):
    """The job's `callback_url` and how its delivery went."""

    url: str
    state: Literal["pending", "delivered", "failed"] = Field(
        description="pending until delivered (and while the job runs); failed once given up, a "
        "day (LADDER_WEBHOOK_RETRY_FOR) after the job ended."
    )
    attempts: list[WebhookAttempt]
    next_attempt_at: datetime | None


class Job(BaseModel):
    """A job as `api.representation.job_json` shows it."""

    id: UUID
    kind: str
    status: JobStatus
    params: dict[str, Any] = Field(description="The params as validated, defaults filled in.")
    result: dict[str, Any] | None = Field(
        description="The kind's result, once succeeded. Over LADDER_MAX_INLINE_RESULT_BYTES "
        "of JSON, only its top-level scalars, with `artifact: result.json` (the whole result), "
        "`artifact_url` and `result_bytes`."
    )
    summary: str | None = Field(description="A line about the result, or the error, once ended.")
    error: JobError | None
    priority: Priority
    device: Device
    queue: str
    attempts: int = Field(ge=0)
    worker: str | None
    progress: float = Field(ge=0, le=1)
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    webhook: Webhook | None = Field(description="None for a job without a callback_url.")


class JobBrief(BaseModel):
    """A job as listings show it (`api.representation.job_brief`): no params or result, so
    that a page of a hundred jobs stays small; `url` gives the whole job."""

    id: UUID
    url: str
    kind: str
    status: JobStatus
    summary: str | None = Field(description="A line about the result, or the error, once ended.")
    error: JobError | None
    priority: Priority
    device: Device
    queue: str
    attempts: int = Field(ge=0)
    worker: str | None
    progress: float = Field(ge=0, le=1)
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    """A page of jobs, newest first, in their brief form."""

    items: list[JobBrief]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class JobItems(BaseModel):
    """Jobs submitted together, in the order they were sent."""

    items: list[Job]


class Problem(BaseModel):
    """An error, as RFC 9457 problem details; `errors` names each field at fault."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class KindInfo(BaseModel):
    """A job kind: what it computes, where it runs, its params and limits."""

    name: str
    summary: str
    pools: list[str]
    params_schema: dict[str, Any] = Field(description="The JSON Schema of the kind's params.")
    limits: dict[str, Any]


class KindList(BaseModel):
    """The kinds this installation runs."""

    items: list[KindInfo]


class RetentionRule(BaseModel):
    """How long jobs that ended in one status are kept after they ended."""

    seconds: int = Field(ge=0, description="0: kept forever.")
    duration: str = Field(description="The same in words: `7d`, `12h`, or `forever`.")


class Retention(BaseModel):
    """The retention policy (LADDER_RETENTION_*): past it, a job is purged and is 404."""

    succeeded: RetentionRule
    failed: RetentionRule
    cancelled: RetentionRule


class KeyLimits(BaseModel):
    """The limits on the calling key, its own overrides included."""

    max_active_jobs: int = Field(ge=0, description="Queued and running jobs at once; 0: none.")
    max_priority: int = Field(description="The highest priority the key may ask for.")
    max_inline_result_bytes: int = Field(
        description="A larger result (as JSON) is kept as the artifact result.json."
    )
    max_body_bytes: int = Field(description="The largest request body; past it, 413.")
    max_batch: int = Field(description="The most jobs one POST /api/v1/jobs/batch may hold.")
    rate_limit_per_minute: int = Field(ge=0, description="Requests a minute; 0: no limit.")


class Info(BaseModel):
    """This service's retention policy and the calling key's limits."""

    version: str = Field(description="The HTTP contract's version.")
    retention: Retention
    purge_every_s: int = Field(ge=0, description="Seconds between purges; 0: never.")
    limits: KeyLimits


class WebhookSecret(BaseModel):
    """What signs the webhooks of the calling key's jobs: `Ladder-Signature: t=<unix time>,
    v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>`."""

    secret: str
    header: str = Field(description="The header that carries the signature.")
    scheme: str = Field(description="The signature's scheme, as named in the header (v1).")


class WorkerList(BaseModel):
    """The worker registry: each worker's pool, device, models, running jobs and tallies."""

    items: list[dict[str, Any]]
    offline_after_s: float = Field(description="A worker silent this long shows as offline.")


class Stats(BaseModel):
    """Counts by status and kind, queue depths, and throughput and durations per window."""

    jobs: dict[str, Any]
    queues: dict[str, int]
    windows: dict[str, Any]
    at: datetime


class ModelList(BaseModel):
    """OpenAI's model listing: the models `generate` can use."""

    object: Literal["list"]
    data: list[dict[str, Any]]


class Health(BaseModel):
    """The process is up."""

    status: str


class Readiness(BaseModel):
    """Each dependency's state: `ok` or the error met."""

    status: str
    checks: dict[str, str]


MODELS: tuple[type[BaseModel], ...] = (
    Job,
    JobBrief,
    JobList,
    JobItems,
    Problem,
    KindList,
    Info,
    WebhookSecret,
    WorkerList,
    Stats,
    ModelList,
    Health,
    Readiness,
)
"""Every response model, for the document's components."""
