"""The migrations are the schema: they must build exactly what the models describe."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import OperationalError

from api.auth import hash_token
from api.keys import seed_admin_key
from shared.db import Database, make_engine
from shared.models import ApiKey, Base
from shared.schema import alembic_config, upgrade
from tests.support import check_webhooks_migration_round_trip


def test_models_and_migrations_agree(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_downgrade_to_base_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/round-trip.db"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(url)
    assert {"jobs", "api_keys", "artifacts"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_an_upgrade_revokes_the_admin_keys_of_earlier_admin_tokens(tmp_path: Path) -> None:
    """Before 0004 each new LADDER_ADMIN_TOKEN added a live key named admin and left the old
    ones working; after it, the next start leaves only the current token's."""
    url = f"sqlite:///{tmp_path}/old.db"
    command.upgrade(alembic_config(url), "0003")
    engine = make_engine(url)
    old = ["first-admin-token", "current-admin-token", "last-admin-token"]
    with engine.begin() as connection:
        for token in [*old, "bob-token"]:
            connection.execute(
                text("INSERT INTO api_keys (name, token_hash, is_admin, created_at) "
                     "VALUES (:name, :hash, :admin, CURRENT_TIMESTAMP)"),
                {"name": "bob" if token == "bob-token" else "admin",
                 "hash": hash_token(token), "admin": token != "bob-token"},
            )  # fmt: skip
    upgrade(url)
    db = Database(url)
    seed_admin_key(db, "current-admin-token")
    with db.session() as session:
        live = session.execute(
            select(ApiKey.name, ApiKey.token_hash).where(ApiKey.revoked_at.is_(None))
        ).all()
    assert sorted(hash for _, hash in live) == sorted(map(hash_token, ["current-admin-token",
                                                                       "bob-token"]))  # fmt: skip
    db.engine.dispose()
    engine.dispose()


def test_webhooks_migration_keeps_every_row_up_down_and_up_again(tmp_path: Path) -> None:
    check_webhooks_migration_round_trip(f"sqlite:///{tmp_path}/existing.db")


def test_a_failed_migration_leaves_sqlite_as_it_was(tmp_path: Path) -> None:
    """SQLite runs an upgrade in one transaction, DDL included: 0005 failing at its new table
    leaves no new column behind, and the version where it was."""
    url = f"sqlite:///{tmp_path}/half.db"
    command.upgrade(alembic_config(url), "0004")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE webhook_deliveries (id INTEGER PRIMARY KEY)"))
    with pytest.raises(OperationalError, match="already exists"):
        upgrade(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [
            ("0004",)
        ]
    assert "callback_url" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    assert "webhook_secret" not in {c["name"] for c in inspect(engine).get_columns("api_keys")}
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE webhook_deliveries"))
    upgrade(url)
    assert "callback_url" in {c["name"] for c in inspect(engine).get_columns("jobs")}
    engine.dispose()
