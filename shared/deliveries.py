"""Webhook deliveries in the database, which holds their schedule so that nothing is lost to a
restart: made in the very transaction that ends the job, taken by a worker when due, each
attempt written back with the next one's time.

A worker takes a due delivery by pushing its `next_attempt_at` past the end of the attempt it is
about to make (one conditional UPDATE, so two workers never take the same one): the hold, which
outlasts an attempt's deadline (worker.webhooks) by a wide margin. Only the worker holding it
may record its attempt: the record matches the very hold it took, so that a worker whose hold
lapsed (it stalled) changes nothing. A worker that dies mid-attempt leaves it to come due again
when the hold ends: a delivery is made at least once, and a receiver tells repeats apart by the
`Ladder-Delivery` header.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, load_only

from shared.db import Database
from shared.models import ApiKey, Job, WebhookDelivery, new_webhook_secret, timestamp, utcnow
from shared.representation import BRIEF_COLUMNS, job_brief

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
SUPERSEDED = "superseded"
"""Its job was retried before it was delivered: the new run's ending is told instead, and this
one, about a run that no longer stands, is not tried again. Never a job's `webhook` state."""


def add(session: Session, job_id: str, url: str) -> None:
    """Make the delivery of a job that has just ended, in the transaction that ended it: its
    body is the job's compact view as it ended, whatever happens to the job later."""
    job = session.scalars(
        select(Job)
        .options(load_only(*BRIEF_COLUMNS))
        .where(Job.id == job_id)
        .execution_options(populate_existing=True)
    ).one()
    body = json.dumps(job_brief(job), separators=(",", ":"))
    session.add(
        WebhookDelivery(
            job_id=job_id, url=url, body=body, state=PENDING, next_attempt_at=utcnow(), attempts=[]
        )
    )


@dataclass(frozen=True)
class Due:
    """A delivery a worker has taken, with what it needs to make the attempt."""

    id: int
    job_id: str
    url: str
    body: str
    secret: str
    attempts: list[dict[str, Any]]
    created_at: datetime
    held_until: datetime
    """The hold taken: the `next_attempt_at` written, which `record` requires to be there still."""


def take_due(db: Database, now: datetime, limit: int, hold: float) -> list[Due]:
    """Take up to `limit` deliveries due by `now`, oldest due first; each is the caller's until
    `hold` seconds from now, when it comes due again unless the attempt was recorded."""
    held_until = now + timedelta(seconds=hold)
    due = (WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now)
    with db.session() as session:
        # Read first: every worker asks every second, and on SQLite an UPDATE would take the
        # database's write lock each time even with nothing due.
        chosen = list(
            session.scalars(
                select(WebhookDelivery.id)
                .where(*due)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            )
        )
    if not chosen:
        return []
    with db.session() as session:
        # The conditions again: another worker may have taken one since it was read.
        taken = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(chosen), *due)
            .values(next_attempt_at=held_until)
            .returning(
                WebhookDelivery.id,
                WebhookDelivery.job_id,
                WebhookDelivery.url,
                WebhookDelivery.body,
                WebhookDelivery.attempts,
                WebhookDelivery.created_at,
            )
            .execution_options(synchronize_session=False)
        ).all()
        if not taken:
            return []
        owners = dict(
            session.execute(
                select(Job.id, Job.api_key_id).where(Job.id.in_({row.job_id for row in taken}))
            ).all()
        )
        signing = webhook_secrets(session, owners.values())
    return [
        Due(row.id, row.job_id, row.url, row.body, signing[owners[row.job_id]],
            list(row.attempts or []), _utc(row.created_at), held_until)
        for row in sorted(taken, key=lambda row: row.id)
    ]  # fmt: skip


def webhook_secrets(session: Session, key_ids: Iterable[int]) -> dict[int, str]:
    """The webhook secrets of these keys, by key id. A key the release before webhooks made
    (while this one was rolled out) has none yet: it is given one here, once (a conditional
    UPDATE, so that two asking at once agree on it)."""
    wanted = set(key_ids)
    found: dict[int, str | None] = {
        key_id: secret
        for key_id, secret in session.execute(
            select(ApiKey.id, ApiKey.webhook_secret).where(ApiKey.id.in_(wanted))
        )
    }
    missing = [key_id for key_id, secret in found.items() if secret is None]
    for key_id in missing:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.webhook_secret.is_(None))
            .values(webhook_secret=new_webhook_secret())
            .execution_options(synchronize_session=False)
        )
    if missing:
        filled = select(ApiKey.id, ApiKey.webhook_secret).where(ApiKey.id.in_(missing))
        found.update((key_id, secret) for key_id, secret in session.execute(filled))
    return {key_id: str(secret) for key_id, secret in found.items()}


def record(
    db: Database,
    delivery: Due,
    attempt: dict[str, Any],
    state: str,
    next_attempt_at: datetime | None,
) -> bool:
    """Write an attempt, the state it leaves the delivery in and when the next one is due, if
    the caller still holds the delivery; False, writing nothing, when it does not: its hold
    lapsed (and another worker may have taken it since), the delivery is no longer pending
    (its job was retried), or it is gone (its job was purged)."""
    with db.session() as session:
        done = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.state == PENDING,
                WebhookDelivery.next_attempt_at == delivery.held_until,
            )
            .values(
                attempts=[*delivery.attempts, attempt],
                state=state,
                next_attempt_at=next_attempt_at,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def supersede(session: Session, job_id: str) -> None:
    """Stop the pending deliveries of a job that is being retried, in the retry's transaction:
    they tell of a run that no longer stands, and would otherwise go on being tried, perhaps
    after the new run's ending has been told, leaving the receiver with the old one."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id, WebhookDelivery.state == PENDING)
        .values(state=SUPERSEDED, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )


def latest(db: Database, job_id: str) -> WebhookDelivery | None:
    """The delivery of the job's latest ending (a retried job may have ended more than once;
    the deliveries of the runs before were superseded)."""
    with db.session() as session:
        return session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job_id, WebhookDelivery.state != SUPERSEDED)
            .order_by(WebhookDelivery.id.desc())
            .limit(1)
        ).first()


def view(url: str, delivery: WebhookDelivery | None) -> dict[str, Any]:
    """A job's `webhook` object: `pending` with no attempts until the job has ended."""
    if delivery is None:
        return {"url": url, "state": PENDING, "attempts": [], "next_attempt_at": None}
    return {
        "url": delivery.url,
        "state": delivery.state,
        "attempts": list(delivery.attempts or []),
        "next_attempt_at": timestamp(delivery.next_attempt_at),
    }


def _utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
