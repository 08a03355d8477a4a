"""API keys: tokens are shown once and stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, timedelta

from flask import current_app, g, request
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from api import ratelimit
from api.problems import Problem
from shared.db import Database
from shared.models import ApiKey, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """The key a request came with."""

    key_id: int
    name: str
    is_admin: bool
    max_active_jobs: int | None = None
    """The key's own quota of queued and running jobs; None: LADDER_MAX_ACTIVE_JOBS_PER_KEY."""
    max_priority: int | None = None
    """The key's own priority ceiling; None: LADDER_MAX_PRIORITY (admins have none)."""

    @classmethod
    def of(cls, key: ApiKey) -> Caller:
        return cls(key.id, key.name, key.is_admin, key.max_active_jobs, key.max_priority)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ldr_" + secrets.token_urlsafe(32)


def create_key(
    db: Database,
    name: str,
    *,
    admin: bool = False,
    token: str | None = None,
    max_active_jobs: int | None = None,
    max_priority: int | None = None,
) -> str:
    """Store a new key and return its token, the only time it is seen. A live key of the same
    name already there is an IntegrityError."""
    token = token or new_token()
    with db.session() as session:
        session.add(
            ApiKey(
                name=name,
                token_hash=hash_token(token),
                is_admin=admin,
                max_active_jobs=max_active_jobs,
                max_priority=max_priority,
            )
        )
    return token


def _look_up(db: Database, digest: str) -> Caller | None:
    with db.session() as session:
        key = session.scalars(select(ApiKey).where(ApiKey.token_hash == digest)).first()
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.token_hash, digest):
        return None
    _note_use(db, key)
    return Caller.of(key)


def _note_use(db: Database, key: ApiKey) -> None:
    """Stamp the key's last use. Called on a look-up only, so a busy key costs one UPDATE per
    process every RecentKeys.KEEP_SECONDS at most, and none while another process just did."""
    now = utcnow()
    last = key.last_used_at
    if last is not None and last.replace(tzinfo=last.tzinfo or UTC) > now - timedelta(
        seconds=RecentKeys.KEEP_SECONDS
    ):
        return
    try:
        with db.session() as session:
            session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    except SQLAlchemyError:
        # Bookkeeping: a good key is not refused because its last-use stamp could not be written.
        log.warning("could not record the last use of key %s", key.id, exc_info=True)


class RecentKeys:
    """Keys looked up in the last few seconds, by token hash (None for a refused one), so that
    a busy client costs one SELECT every KEEP_SECONDS instead of one a request. A revoked key
    stops working within that time."""

    KEEP_SECONDS = 5.0
    MOST = 10_000

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, Caller | None]] = {}

    def get(self, digest: str) -> Caller | None:
        found = self._seen.get(digest)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, digest: str, caller: Caller | None) -> None:
        if caller is None:
            return  # a refused token is looked up each time: nothing to gain by keeping it
        if len(self._seen) >= self.MOST:
            self._seen.clear()
        self._seen[digest] = (time.monotonic() + self.KEEP_SECONDS, caller)


def authenticate(db: Database) -> Caller:
    """The caller of the current request, or a 401 problem (a 429 for an address past
    `LADDER_AUTH_FAILURES_PER_MINUTE` unknown tokens this minute)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "send an API key as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="ladder"'},
        )
    digest = hash_token(token.strip())
    known: RecentKeys = current_app.extensions.setdefault("ladder.keys", RecentKeys())
    caller = known.get(digest)
    if caller is None:
        caller = _look_up(db, digest)
        known.put(digest, caller)
    if caller is None:
        ratelimit.count_failure()
        raise Problem(
            401,
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="ladder", error="invalid_token"'},
        )
    ratelimit.count(caller.key_id)
    g.caller = caller
    return caller
