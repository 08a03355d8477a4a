"""The worker's Celery app: Ladder's settings, database, Redis and producer, built per process."""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared import streams
from shared.config import Settings
from shared.db import Database
from shared.producer import Producer, celery_config
from shared.streams import Redis


class LadderCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries Ladder's settings and database for its tasks.

    There is no global app: each process builds its own (see worker.factory)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__("ladder", set_as_current=False, **kwargs)
        self.conf.update(celery_config(settings))
        self.settings = settings
        self.producer = Producer(settings, self)
        self._db: Database | None = None
        self._redis: Redis | None = None

    @property
    def db(self) -> Database:
        # Built on first use, so a prefork child never inherits its parent's connections.
        if self._db is None:
            self._db = Database(self.settings.database_url)
        return self._db

    @property
    def redis(self) -> Redis:
        """Redis for streams, cancel flags and heartbeats (the broker's own server)."""
        if self._redis is None:
            self._redis = streams.connect(self.settings.broker_url)
        return self._redis

    def after_fork(self) -> None:
        if self._db is not None:
            self._db.dispose()
        self._redis = None
