"""Many submissions by one key at once, on the real databases: the quota lets exactly its
number through, never one more (the key's row is locked before the count)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.auth import create_key
from shared import jobs
from shared.db import Database
from shared.models import ApiKey, Job
from shared.schema import upgrade

LIMIT = 5
CLIENTS = 16


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/race.db"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    database = Database(url)
    yield database
    database.engine.dispose()


def test_racing_submissions_never_pass_the_quota(database: Database) -> None:
    name = f"racer-{id(database)}"
    create_key(database, name)
    with database.session() as s:
        owner = s.scalars(select(ApiKey.id).where(ApiKey.name == name)).one()
    new = jobs.NewJob(owner, "stairs", {"n": 3}, 5, "auto", "cpu")

    def submit(_: int) -> str:
        try:
            jobs.create(database, new, max_active=LIMIT)
        except jobs.QuotaExceeded:
            return "refused"
        return "made"

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(submit, range(CLIENTS * 2)))
    with database.session() as s:
        made = s.scalar(select(func.count()).select_from(Job).where(Job.api_key_id == owner))
    assert outcomes.count("made") == LIMIT == made
    assert outcomes.count("refused") == CLIENTS * 2 - LIMIT
