"""The migrations are the schema: they must build exactly what the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from api.auth import hash_token
from api.keys import seed_admin_key
from shared.db import Database, make_engine
from shared.models import ApiKey, Base
from shared.schema import alembic_config, upgrade


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
