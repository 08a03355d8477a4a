"""How far a running job has come: `progress` events for its followers, and the row's `progress`.

A runner reports as often as it likes: a report that goes nowhere costs a comparison and a
clock read, so a loop may report every step. What leaves the process is throttled:

- a `progress` event on the job's stream at most every EVENT_SECONDS, and at each new stage
  (runners name a handful of them, and a stage is news a follower should not miss);
- the row's `progress` at most every ROW_SECONDS, by one conditional UPDATE that matches only
  this attempt while it runs (see `jobs.record_progress`): an ended job keeps its finish's 1.0,
  a cancelled job what it had.

Neither goes out before a job has run that long, so a short job costs nothing. Progress only
rises, within [0, 1]. Reports are best effort: Redis or the database being away delays them
and never fails the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from shared import jobs, streams
from shared.db import Database
from shared.streams import Redis

log = logging.getLogger(__name__)

EVENT_SECONDS = 0.25
"""The shortest time between two `progress` events of a job, save for a new stage."""
ROW_SECONDS = 1.0
"""The shortest time between two writes of a job's `progress` column."""


class Report(Protocol):
    """What a runner calls with its progress: a fraction, a stage's name, details to show."""

    def __call__(self, fraction: float, stage: str | None = None, **detail: Any) -> None: ...


def ignore(fraction: float, stage: str | None = None, **detail: Any) -> None:
    """A `Report` for a pure function called outside a job (tests, benchmarks)."""


class Progress:
    """One attempt's progress, throttled on its way to the stream and the row."""

    def __init__(
        self,
        redis: Redis,
        db: Database | None,
        job_id: str,
        attempt: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis, self.db, self.job_id, self.attempt = redis, db, job_id, attempt
        self.clock = clock
        self.fraction = 0.0
        self.stage: str | None = None
        self.written = 0.0
        """The row's value as this attempt last wrote it (the claim wrote 0)."""
        self.row_open = db is not None
        """False once the row is not this attempt's running job any more: no more writes."""
        self._event_at = self._row_at = clock()
        self._failed = False

    def report(self, fraction: float, stage: str | None = None, **detail: Any) -> None:
        """Note how far the job has come; tell followers and the row when it is their turn."""
        if not fraction >= 0.0:  # also NaN, which min() would turn into 1.0
            return
        fraction = min(fraction, 1.0)
        new_stage = stage is not None and stage != self.stage
        if fraction <= self.fraction and not new_stage:
            return
        self.fraction = max(self.fraction, fraction)
        if new_stage:
            self.stage = stage
        now = self.clock()
        if new_stage or now - self._event_at >= EVENT_SECONDS:
            self._event_at = now
            self._publish(detail)
        if self.row_open and now - self._row_at >= ROW_SECONDS:
            self._row_at = now
            self._write()

    def _publish(self, detail: dict[str, Any]) -> None:
        data: dict[str, Any] = {"progress": round(self.fraction, 4)}
        if self.stage is not None:
            data["stage"] = self.stage
        try:
            streams.publish(self.redis, self.job_id, "progress", {**data, **detail})
        except RedisError:
            self._trouble("Redis")

    def _write(self) -> None:
        if self.db is None or self.fraction <= self.written:
            return
        try:
            self.row_open = jobs.record_progress(self.db, self.job_id, self.attempt, self.fraction)
        except SQLAlchemyError:
            self._trouble("the database")
        else:
            self.written = self.fraction

    def _trouble(self, what: str) -> None:
        # Once a job: a report can come several times a second, the outage is one event.
        level = logging.DEBUG if self._failed else logging.WARNING
        log.log(level, "job %s: %s did not take its progress", self.job_id, what, exc_info=True)
        self._failed = True
