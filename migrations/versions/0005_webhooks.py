"""Webhooks: a job's `callback_url`, a webhook secret per API key, and the deliveries, each with
its attempts, that the workers' delivery loop works through.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10

Every existing key gets a secret of its own here. Both new columns are nullable and added with
a plain ALTER TABLE … ADD COLUMN, and the downgrade drops them with ALTER TABLE … DROP COLUMN
(SQLite 3.35 or later): on SQLite neither rebuilds a table, which cannot be done to `api_keys`
or `jobs` while other tables' foreign keys point at them (shared.db turns foreign keys on; a
rebuild's DROP TABLE would fail, or cascade). The previous release can run against this
schema: it ignores the new table and columns, and a key it makes has no secret until one is
first needed (shared.deliveries.webhook_secrets fills it).
"""

import secrets
import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Dates as SQLAlchemy writes them (timezone=True); a BigInteger key that SQLite auto-increments.
SerialKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Not in batch mode: on SQLite a batch rebuilds the table for anything but ADD COLUMN.
    op.add_column("jobs", sa.Column("callback_url", sa.String(2048), nullable=True))
    op.add_column("api_keys", sa.Column("webhook_secret", sa.String(64), nullable=True))
    connection = op.get_bind()
    for (key_id,) in connection.execute(sa.text("SELECT id FROM api_keys")).all():
        connection.execute(
            sa.text("UPDATE api_keys SET webhook_secret = :secret WHERE id = :id"),
            {"secret": "whsec_" + secrets.token_urlsafe(32), "id": key_id},
        )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", SerialKey, primary_key=True),
        sa.Column(
            "job_id",
            sa.String(36),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.JSON, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_job_id", "webhook_deliveries", ["job_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(
            f"downgrading 0005 needs SQLite 3.35 or later (ALTER TABLE … DROP COLUMN); "
            f"this Python has {sqlite3.sqlite_version}"
        )
    op.drop_table("webhook_deliveries")
    # Plain DROP COLUMN, not a batch: see the upgrade.
    op.drop_column("api_keys", "webhook_secret")
    op.drop_column("jobs", "callback_url")
