"""A key's life after it is made: listed, revoked and rotated, from the CLI and the dashboard.

A revoked or rotated-away token stops working within RecentKeys.KEEP_SECONDS (5 s) in every API
process: each keeps a key it has looked up that long before it asks the database again.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from api.auth import hash_token, new_token
from shared.db import Database
from shared.models import ApiKey, new_webhook_secret, utcnow

log = logging.getLogger(__name__)

SEEDED_NAME = "admin"
"""The name of the key seeded from LADDER_ADMIN_TOKEN, unless a key made by hand holds it."""


class KeyRefused(Exception):
    """A key operation that cannot be done, with a message meant for the operator."""


def admin(key: ApiKey) -> str:
    """The admin column: whether it is one, and whether LADDER_ADMIN_TOKEN made it."""
    return ("yes (seeded)" if key.seeded else "yes") if key.is_admin else "no"


def limits(key: ApiKey) -> str:
    """The key's own limits in a few words, "-" when the settings' apply."""
    own = []
    if key.max_active_jobs is not None:
        own.append(f"active<={key.max_active_jobs}")
    if key.max_priority is not None:
        own.append(f"priority<={key.max_priority}")
    return " ".join(own) or "-"


def when(value: datetime | None) -> str:
    """A key's time to the second, in UTC; "never" for none."""
    if value is None:
        return "never"
    # SQLite hands datetimes back without their zone; they were written in UTC.
    return value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def all_keys(db: Database) -> list[ApiKey]:
    """Every key, live ones first, then by name."""
    with db.session() as session:
        query = select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.name, ApiKey.id)
        return list(session.scalars(query))


def live_key(db: Database, name: str) -> ApiKey | None:
    with db.session() as session:
        query = select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        return session.scalars(query).first()


def find(db: Database, key_id: int) -> ApiKey | None:
    with db.session() as session:
        return session.get(ApiKey, key_id)


def revoke(db: Database, key_id: int) -> bool:
    """Revoke the key; False when it was revoked already (or is unknown)."""
    with db.session() as session:
        done = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def rotate(db: Database, name: str) -> str:
    """Give the live key NAME a new token (and webhook secret) and return it; the old one stops
    working.

    The row stays, so the key's jobs, limits and name stay with it."""
    key = live_key(db, name)
    if key is None:
        raise KeyRefused(f"no live key named {name!r}")
    if key.seeded:
        # The next start would find no key for LADDER_ADMIN_TOKEN and seed the old token again.
        raise KeyRefused(
            f"key {name!r} is seeded from LADDER_ADMIN_TOKEN: set a new token there and restart "
            "the API, which revokes this key"
        )
    token = new_token()
    with db.session() as session:
        done = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key.id, ApiKey.revoked_at.is_(None))
            # Whoever held the old token could read the webhook secret: it goes too.
            .values(token_hash=hash_token(token), webhook_secret=new_webhook_secret())
        )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise KeyRefused(f"key {name!r} was revoked meanwhile")
    return token


def seed_admin_key(db: Database, token: str) -> None:
    """Make `token` the admin key seeded from LADDER_ADMIN_TOKEN; the key seeded from an earlier
    value is revoked in the same transaction, so there is never more than one.

    Every API process calls this as it starts, gunicorn's workers all at once: the first insert
    wins, and the others, refused by the unique token hash or name, look again and find it. A
    token whose key was revoked (`keys revoke admin` after a leak) is not brought back: it stays
    refused until LADDER_ADMIN_TOKEN changes.
    """
    digest = hash_token(token)
    for attempt in range(3):
        with db.session() as session:
            found = session.scalars(select(ApiKey).where(ApiKey.token_hash == digest)).first()
        if found is not None:
            if found.revoked_at is not None:
                log.warning("LADDER_ADMIN_TOKEN is the token of revoked key %r: set a new one, "
                            "or no admin key is seeded", found.name)  # fmt: skip
            elif found.seeded:
                _revoke_other_seeded(db, found.id)
            return
        try:
            _seed(db, digest)
            return
        except IntegrityError:
            if attempt == 2:
                raise


def _revoke_other_seeded(db: Database, current: int) -> None:
    """Revoke live seeded keys but the current one: those an upgrade from before seeded keys
    were marked found live (every earlier token's). Normally it changes nothing."""
    with db.session() as session:
        stale = session.execute(
            update(ApiKey)
            .where(ApiKey.seeded.is_(True), ApiKey.revoked_at.is_(None), ApiKey.id != current)
            .values(revoked_at=utcnow())
        )
    count = stale.rowcount  # type: ignore[attr-defined]
    if count:
        log.warning("revoked %d admin keys of earlier LADDER_ADMIN_TOKEN values", count)


def _seed(db: Database, digest: str) -> None:
    with db.session() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.seeded.is_(True), ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        taken = set(
            session.scalars(
                select(ApiKey.name).where(
                    ApiKey.revoked_at.is_(None), ApiKey.name.startswith(SEEDED_NAME)
                )
            )
        )
        name = next(n for n in _seed_names() if n not in taken)
        if name != SEEDED_NAME:
            # A key made by hand already holds the name: it keeps it, and this key takes another.
            log.warning("a live key made by `keys create` is named %r: the key seeded from "
                        "LADDER_ADMIN_TOKEN is named %r", SEEDED_NAME, name)  # fmt: skip
        session.add(ApiKey(name=name, token_hash=digest, is_admin=True, seeded=True))


def _seed_names() -> Iterator[str]:
    yield SEEDED_NAME
    yield f"{SEEDED_NAME}-seeded"
    for n in itertools.count(2):
        yield f"{SEEDED_NAME}-seeded-{n}"
