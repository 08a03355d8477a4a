"""How a job looks to a client."""

from __future__ import annotations

from typing import Any

from api.context import ladder
from shared import deliveries
from shared.models import Job, JobStatus, timestamp
from shared.representation import BRIEF_COLUMNS, artifact_url, job_brief, job_url

__all__ = ["BRIEF_COLUMNS", "artifact_url", "job_brief", "job_json", "job_url"]


def job_json(job: Job) -> dict[str, Any]:
    """A job as clients see it; `api.schemas.Job` describes these fields (a test checks)."""
    result = job.result
    if result is not None and "artifact" in result:
        result = {**result, "artifact_url": artifact_url(job.id, result["artifact"])}
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "params": job.params,
        "result": result,
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
        "webhook": webhook_json(job),
    }


def webhook_json(job: Job) -> dict[str, Any] | None:
    """The job's callback and its delivery so far; None for a job without `callback_url`.

    Only an ended job can have deliveries, so only for one is the database asked (a batch of
    new jobs costs no query)."""
    if job.callback_url is None:
        return None
    latest = None
    if JobStatus(job.status).finished:
        latest = deliveries.latest(ladder().db, job.id)
    return deliveries.view(job.callback_url, latest)
