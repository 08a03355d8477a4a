"""Fixtures every layer of tests uses: settings, and a database built by `alembic upgrade head`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.db import Database
from shared.schema import upgrade
from tests.support import ADMIN_TOKEN, SECRET_KEY


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model registry holding a tiny GLM-4 of random weights, built here from a config, and
    SmolLM2's GGUF as `make install` places it (`smollm2-gguf`)."""
    from scripts.convert_smollm2 import place_gguf
    from tests.tiny_models import build_tiny_glm4

    root = tmp_path_factory.mktemp("models")
    (root / "tiny-glm4").mkdir()
    build_tiny_glm4(root / "tiny-glm4")
    place_gguf(root / "smollm2-gguf")
    return root


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/ladder.db"
    upgrade(url)
    return url


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    # memory:// is kombu's in-process transport: the API can queue without a Redis.
    return Settings(
        database_url=sqlite_url,
        broker_url="memory://",
        admin_token=ADMIN_TOKEN,
        secret_key=SECRET_KEY,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.engine.dispose()
