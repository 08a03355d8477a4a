"""A whole Ladder of the test's own, to break: a private PostgreSQL it may stop, a private Redis
it may restart empty, the API under gunicorn and Celery workers it may kill."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.db import Database
from shared.schema import upgrade
from tests.processes import ApiServer, Cluster, PostgresServer, RedisServer
from tests.support import ADMIN_TOKEN, SECRET_KEY, Client, need


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if not shutil.which("pg_ctl") and not Path("/usr/lib/postgresql/15/bin/pg_ctl").exists():
        need("PostgreSQL server binaries", "initdb and pg_ctl are not installed")
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def cluster(postgres: PostgresServer, tmp_path: Path, tiny_models: Path) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path / "redis.log")
    redis.start()
    database_url = postgres.create_database(f"faults_{uuid.uuid4().hex[:8]}")
    upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        broker_url=redis.url,
        admin_token=ADMIN_TOKEN,
        secret_key=SECRET_KEY,
        models_dir=tiny_models,
        default_generate_model="tiny-glm4",
    )
    # The fault tests queue a thousand jobs and more on the admin key: no per-key quota here.
    api = ApiServer(settings, tmp_path / "api.log", env={"LADDER_MAX_ACTIVE_JOBS_PER_KEY": "0"})
    db = Database(database_url)
    built = Cluster(settings, tmp_path, postgres, redis, api, Client(api.url, ADMIN_TOKEN), db)
    try:
        api.start()
        yield built
    finally:
        built.stop()
