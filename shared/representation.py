"""A job's compact view, which listings show and webhooks deliver: in shared/, because the API
answers with it and the workers' webhook deliveries send it."""

from __future__ import annotations

from typing import Any

from shared.models import Job, timestamp

BRIEF_COLUMNS = (
    Job.id, Job.kind, Job.status, Job.summary, Job.error, Job.priority, Job.device, Job.queue,
    Job.attempts, Job.worker, Job.progress, Job.created_at, Job.started_at, Job.finished_at,
)  # fmt: skip
"""What `job_brief` reads: a listing loads only these, never params or result."""


def job_brief(job: Job) -> dict[str, Any]:
    """A job as listings show it; `api.schemas.JobBrief` describes these fields."""
    return {
        "id": job.id,
        "url": job_url(job.id),
        "kind": job.kind,
        "status": job.status,
        "summary": job.summary,
        "error": job.error,
        "priority": job.priority,
        "device": job.device,
        "queue": job.queue,
        "attempts": job.attempts,
        "worker": job.worker,
        "progress": job.progress,
        "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at),
        "finished_at": timestamp(job.finished_at),
    }


def job_url(job_id: str) -> str:
    return f"/api/v1/jobs/{job_id}"


def artifact_url(job_id: str, name: str) -> str:
    return f"{job_url(job_id)}/artifacts/{name}"
