"""What a runner gets besides its params: the job's id, the settings, and its Redis stream."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from shared import streams, workers
from shared.config import Settings
from shared.streams import Redis


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

    def cancelled(self) -> bool:
        """True once a client has asked to cancel: long runners check it between steps."""
        return streams.cancel_requested(self.redis, self.job_id)
