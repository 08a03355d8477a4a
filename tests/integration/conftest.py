"""Real services: this machine's Redis and PostgreSQL, Celery worker processes, an HTTP server."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from werkzeug.serving import make_server

from api import create_app
from shared.config import Settings
from shared.schema import upgrade
from tests.processes import Stack, start_worker
from tests.support import ADMIN_TOKEN, SECRET_KEY, Client, need

REDIS = os.environ.get("LADDER_TEST_REDIS", "redis://127.0.0.1:6379")
POSTGRES = os.environ.get("LADDER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
# Each stack uses a Redis database of its own, away from the default one; two test runs on
# one machine name other pairs in LADDER_TEST_REDIS_DBS ("11,12"), as each flushes its own.
_DBS = os.environ.get("LADDER_TEST_REDIS_DBS", "13,14").split(",")
REDIS_DB = {"sqlite": int(_DBS[0]), "postgresql": int(_DBS[1])}


@pytest.fixture(scope="session")
def redis_base() -> str:
    try:
        redis.Redis.from_url(REDIS, socket_timeout=2).ping()
    except redis.RedisError as exc:
        need("Redis", f"{REDIS}: {exc}")
    return REDIS


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of the test session's own on this machine's PostgreSQL, dropped at the end."""
    yield from _postgres_database()


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A database of the test's own, empty (no schema), dropped at its end."""
    yield from _postgres_database()


def _postgres_database() -> Iterator[str]:
    name = f"ladder_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        need("PostgreSQL", f"{POSTGRES}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest,
    redis_base: str,
    tiny_models: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    backend: str = request.param
    tmp = tmp_path_factory.mktemp(backend)
    if backend == "sqlite":
        database_url = f"sqlite:///{tmp}/ladder.db"
    else:
        database_url = request.getfixturevalue("postgres_url")
    broker_url = f"{redis_base}/{REDIS_DB[backend]}"
    redis.Redis.from_url(broker_url).flushdb()
    upgrade(database_url)
    settings = Settings(
        database_url=database_url,
        broker_url=broker_url,
        admin_token=ADMIN_TOKEN,
        secret_key=SECRET_KEY,
        models_dir=tiny_models,
        default_generate_model="tiny-glm4",
        # Webhooks go to the tests' own receivers on 127.0.0.1, and a failed one is tried
        # again within seconds, not the 30 s production waits.
        webhook_allow_private=True,
        webhook_first_retry=1,
    )
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    worker = start_worker(settings, tmp / "worker.log", f"it-{backend}")
    generator = start_worker(
        settings, tmp / "generate.log", f"gen-{backend}", None, queue="cpu.generate"
    )
    base_url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield Stack(backend, settings, Client(base_url, ADMIN_TOKEN), worker, base_url, generator)
    finally:
        generator.stop()
        worker.stop()
        server.shutdown()
        app.extensions["ladder"].db.engine.dispose()


@pytest.fixture(autouse=True)
def forget_failed_authentications(request: pytest.FixtureRequest) -> None:
    """Every test here calls from 127.0.0.1: the 401s one test provokes on purpose (a revoked
    key) must not count against the next test's address (LADDER_AUTH_FAILURES_PER_MINUTE)."""
    if "stack" not in request.fixturenames:
        return
    stack: Stack = request.getfixturevalue("stack")
    client = redis.Redis.from_url(stack.settings.broker_url)
    names = list(client.scan_iter("ladder:authfail:*"))
    if names:
        client.delete(*names)
    client.close()
