"""What running Ladder for real needs: key limits and last use, one live key per name, a short
summary per job for listings, indexes for the retention purge and the per-key quota, and tallies
that keep the metrics' counters from going down when jobs are purged or retried.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Live keys that share a name (allowed before) keep working: all but the newest are renamed
`NAME-ID`. Live admin keys named `admin` are taken to be seeded from LADDER_ADMIN_TOKEN (each
change of the variable made one, and none was revoked): the API's next start revokes every one
but the current token's. A key made by hand and named `admin` cannot be told from them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("max_active_jobs", sa.Integer, nullable=True))
        batch.add_column(sa.Column("max_priority", sa.Integer, nullable=True))
        batch.add_column(sa.Column("seeded", sa.Boolean, nullable=False, server_default=sa.false()))
    # Before the renaming: every earlier LADDER_ADMIN_TOKEN left a live key named admin, and
    # the next start revokes all but the current one (api.keys.seed_admin_key).
    op.execute(
        "UPDATE api_keys SET seeded = TRUE WHERE name = 'admin' AND is_admin AND revoked_at IS NULL"
    )
    _rename_duplicate_names()
    op.create_index(
        "uq_api_keys_live_name",
        "api_keys",
        ["name"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("summary", sa.String(200), nullable=True))
        batch.drop_index("ix_jobs_status")
        batch.create_index("ix_jobs_status_finished", ["status", "finished_at"])
        batch.create_index("ix_jobs_owner_status", ["api_key_id", "status"])
    op.create_table(
        "job_tallies",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("jobs", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duration_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duration_sum", sa.Float, nullable=False, server_default="0"),
        sa.Column("duration_buckets", sa.JSON, nullable=True),
    )


def _rename_duplicate_names() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, name FROM api_keys WHERE revoked_at IS NULL ORDER BY id DESC")
    ).all()
    seen: set[str] = set()
    for key_id, name in rows:
        if name in seen:
            connection.execute(
                sa.text("UPDATE api_keys SET name = :name WHERE id = :id"),
                {"name": f"{name[:80]}-{key_id}", "id": key_id},
            )
        seen.add(name)


def downgrade() -> None:
    op.drop_table("job_tallies")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_owner_status")
        batch.drop_index("ix_jobs_status_finished")
        batch.create_index("ix_jobs_status", ["status"])
        batch.drop_column("summary")
    op.drop_index("uq_api_keys_live_name", "api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("seeded")
        batch.drop_column("max_priority")
        batch.drop_column("max_active_jobs")
        batch.drop_column("last_used_at")
