"""Alembic's environment: migrations run against Settings' DATABASE_URL, or a URL a test passes."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from shared.config import Settings
from shared.db import make_engine
from shared.models import Base

config = context.config
if config.config_file_name and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("database_url") or Settings.from_env().database_url

engine = make_engine(url)
with engine.connect() as connection:
    # SQLite can alter a table only by copying it: batch mode does that for us.
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
