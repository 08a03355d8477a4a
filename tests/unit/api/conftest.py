from __future__ import annotations

import socket
from collections.abc import Iterator

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.auth import create_key
from shared.config import Settings
from shared.db import Database
from tests.support import ADMIN_TOKEN


def unknown_host(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, f"{host} is not known to the unit tests")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    # No Redis server in unit tests: heartbeats, streams and cancel flags go to fakeredis.
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    # Nor DNS: a callback URL's host name resolves only where a test says so.
    app.extensions["ladder"].resolve = unknown_host
    yield app
    app.extensions["ladder"].db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def user(db: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(db, 'alice')}"}


@pytest.fixture
def other_user(db: Database) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(db, 'bob')}"}
