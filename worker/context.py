"""What a runner gets besides its params: the job's id, the settings, and its Redis stream."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from shared import streams, workers
from shared.config import Settings
from shared.db import Database
from shared.streams import Redis
from worker.progress import Progress


@dataclass
class RunContext:
    job_id: str
    settings: Settings
    redis: Redis
    pool: str = "cpu"
    """The pool (queue) this worker serves: where the job runs."""
    worker: str = ""
    """The worker's name, as the registry knows it."""
    deadline: float | None = None
    """`time.monotonic()` past which the job must stop (its soft time limit), if it has one.
    Runners that stop themselves check it between steps: a threads pool has no time limits."""
    db: Database | None = None
    """Where `progress` writes the row; without it, progress goes to followers only."""
    attempt: int = 0
    """The attempt this run is (the row's `attempts` when it was claimed)."""
    _progress: Progress = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Made now, so that its throttle counts from the job's start.
        self._progress = Progress(self.redis, self.db, self.job_id, self.attempt)

    def hold_model(self, model: str, info: dict[str, Any]) -> None:
        """Tell the registry this process holds a model (shown on the dashboard)."""
        if self.worker:
            try:
                workers.hold_model(self.redis, self.worker, os.getpid(), model, info)
            except Exception:
                logging.getLogger(__name__).warning("could not update the registry", exc_info=True)

    def publish(self, event: str, data: dict[str, Any]) -> str:
        """Tell followers of the job something (a token, a stage); returns the event id."""
        return streams.publish(self.redis, self.job_id, event, data)

    def progress(self, fraction: float, stage: str | None = None, **detail: Any) -> None:
        """Tell followers and the row how far the job has come (0 to 1, only rising), with a
        stage's name and details for display. Call it as often as convenient: it is throttled
        (see worker.progress) and never raises for Redis or the database."""
        self._progress.report(fraction, stage, **detail)

    def cancelled(self) -> bool:
        """True once a client has asked to cancel: long runners check it between steps."""
        return streams.cancel_requested(self.redis, self.job_id)
