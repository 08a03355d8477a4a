"""The tables: jobs, their artifacts and webhook deliveries, API keys and job tallies. Alembic
migrations create them."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
SerialKey = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands datetimes back without their zone, so restore it."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class Base(DeclarativeBase):
    pass


class JobStatus(enum.StrEnum):
    """Ladder's own job states: the only ones a client ever sees."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class ApiKey(Base):
    """A client's key. Only the SHA-256 of the token is stored; the token is shown once."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # One live key per name, so that `keys revoke NAME` means one key; revoked names free up.
        Index(
            "uq_api_keys_live_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(SerialKey, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Updated at most every few seconds per API process, not on each request."""
    max_active_jobs: Mapped[int | None] = mapped_column(Integer)
    """Over LADDER_MAX_ACTIVE_JOBS_PER_KEY for this key; None: the setting."""
    max_priority: Mapped[int | None] = mapped_column(Integer)
    """Over LADDER_MAX_PRIORITY for this key; None: the setting (admin keys: no ceiling)."""
    seeded: Mapped[bool] = mapped_column(Boolean, default=False)
    """Made from LADDER_ADMIN_TOKEN, and revoked when that variable changes."""
    webhook_secret: Mapped[str | None] = mapped_column(String(64), default=new_webhook_secret)
    """Signs the webhooks of the key's jobs. Kept as it is, not hashed: workers sign with it.
    It proves a delivery came from Ladder; it opens nothing in Ladder to whoever reads it.
    None for a key that the release before webhooks made while this one was being rolled out:
    `shared.deliveries.webhook_secrets` gives it one when first needed."""


class Job(Base):
    """One job. `seq` orders the listing; `id` is the public, unguessable name."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_jobs_idempotency"),
        Index("ix_jobs_owner_seq", "api_key_id", "seq"),
        # The retention purge asks for (status, finished before); the quota for (owner, status).
        Index("ix_jobs_status_finished", "status", "finished_at"),
        Index("ix_jobs_owner_status", "api_key_id", "status"),
        Index("ix_jobs_finished_at", "finished_at"),
        Index("ix_jobs_batch_id", "batch_id"),
    )

    seq: Mapped[int] = mapped_column(SerialKey, primary_key=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    # none_as_null: "no result yet" is SQL NULL, which a WHERE … IS NULL can find.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    priority: Mapped[int] = mapped_column(Integer, default=5)
    device: Mapped[str] = mapped_column(String(8), default="auto")
    queue: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    batch_id: Mapped[str | None] = mapped_column(String(36))
    """The id of the batch's first job, on every job of a batch submitted together."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    """How long the attempt that finished the job ran."""
    summary: Mapped[str | None] = mapped_column(String(200))
    """A line about the result for listings, which carry no params or result."""
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    """Where the job's compact view is POSTed when it ends (see shared.webhooks)."""


class Artifact(Base):
    """A file a job made, kept in the database so that any API process can serve it."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name", name="uq_artifacts_job_name"),)

    id: Mapped[int] = mapped_column(SerialKey, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class WebhookDelivery(Base):
    """One ending of a job told to its `callback_url`: the body, fixed when the job ended, and
    every attempt to deliver it. A retried job that ends again has a second delivery."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The delivery loop asks for (pending, due by now).
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_job_id", "job_id"),
    )

    id: Mapped[int] = mapped_column(SerialKey, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, delivered, failed (given up after `Settings.webhook_retry_for`) or superseded
    (its job was retried before it was delivered; never shown as a job's webhook)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When the next attempt is due; a worker taking it pushes this past its attempt's end, so
    that a worker that dies mid-attempt leaves it due again. None once delivered or failed."""
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """Each attempt: `at`, the HTTP `status` or None, an `error` or None, `duration_ms`."""


class JobTally(Base):
    """Jobs no longer counted from `jobs` (purged, or retried after they ended), by kind and the
    status they had, so that the metrics' counters never go down.

    A purged job is tallied under the status it ended with, and still counts as submitted and
    finished. A job retried after it ended is tallied under "retried-" + that status (as
    "retried-failed"): finished once more, but not submitted again, as its row still counts.
    See api.metrics and shared.tallies."""

    __tablename__ = "job_tallies"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    jobs: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_count: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_sum: Mapped[float] = mapped_column(Float, default=0.0)
    duration_buckets: Mapped[list[int] | None] = mapped_column(JSON)
    """Counts of durations at or under each of the metrics' bucket bounds, in their order."""
