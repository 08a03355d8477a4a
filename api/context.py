"""What each request needs from its app: settings, the database, Redis and the producer."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from shared import streams, webhooks
from shared.config import Settings
from shared.db import Database
from shared.producer import Producer
from shared.streams import Redis
from shared.webhooks import Resolver

REDIS_CONNECTIONS = 10_000
"""Redis connections one API process may open: above its most waiting clients (Redis itself
allows 10,000 clients by default)."""


@dataclass
class Ladder:
    settings: Settings
    db: Database
    producer: Producer
    _redis: Redis | None = None
    resolve: Resolver = webhooks.resolve
    """Host names to addresses, for callback URLs (the unit tests' has no network)."""

    @property
    def redis(self) -> Redis:
        """Redis for heartbeats, streams and cancel flags: the broker's own server."""
        if self._redis is None:
            # Each waiting client blocks on its job's stream with a connection of its own.
            self._redis = streams.connect(self.settings.broker_url, REDIS_CONNECTIONS)
        return self._redis

    @redis.setter
    def redis(self, client: Redis) -> None:
        self._redis = client


def ladder() -> Ladder:
    found: Ladder = current_app.extensions["ladder"]
    return found
