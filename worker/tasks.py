"""The one Celery task: run a job by id. The work itself happens in `worker.execute`."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.exceptions import TimeLimitExceeded

from shared import jobs, streams
from shared.models import JobStatus
from shared.producer import TASK_NAME
from worker.app import LadderCelery
from worker.execute import execute


class JobTask(Task):  # type: ignore[misc]
    """Runs in the worker child; `on_failure` also runs in the parent on a hard timeout."""

    app: LadderCelery

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if isinstance(exc, TimeLimitExceeded) and args:
            limit = f"{exc.args[0]:g} s" if exc.args else "its limit"
            stopped = jobs.error("timeout", f"the job ran past {limit} and was stopped")
            if jobs.fail_running(self.app.db, args[0], stopped):
                streams.publish_status(self.app.redis, args[0], JobStatus.FAILED)


def register(app: LadderCelery) -> None:
    @app.task(name=TASK_NAME, base=JobTask, bind=True)
    def run_job(self: JobTask, job_id: str) -> None:
        hard, soft = self.request.timelimit or (None, None)
        execute(self.app, job_id, self.request.hostname or "unknown", hard, soft)
