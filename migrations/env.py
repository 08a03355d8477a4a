"""Alembic's environment: migrations run against Settings' DATABASE_URL, or a URL a test passes."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import Connection, event

from shared.config import Settings
from shared.db import make_engine
from shared.models import Base

config = context.config
if config.config_file_name and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("database_url") or Settings.from_env().database_url
sqlite = url.startswith("sqlite")

engine = make_engine(url)
if sqlite:
    # Python's sqlite3 runs DDL outside any transaction, so that a migration failing midway
    # would leave its first steps done. Transactions are ours instead: BEGIN IMMEDIATE (the
    # write lock from the start) holds every statement of the upgrade, DDL too, and a failure
    # rolls it all back, as on PostgreSQL.
    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


with engine.connect() as connection:
    # SQLite alters a table (but for ADD COLUMN) only by copying it, which batch mode does; a
    # table that others' foreign keys point at cannot be copied so (shared.db turns foreign
    # keys on), so a migration adds and drops its columns with plain ALTER TABLE (see 0005).
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=sqlite,
        compare_type=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
