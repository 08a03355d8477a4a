"""A key is looked up once every few seconds, not once a request, and a revoked one stops
working within those seconds."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import event, select

from api.auth import RecentKeys
from shared.db import Database
from shared.models import ApiKey, utcnow


def test_a_busy_key_costs_one_lookup_and_a_revoked_one_stops_in_seconds(
    client: FlaskClient, user: dict[str, str], db: Database, monkeypatch: Any
) -> None:
    app_db: Database = client.application.extensions["ladder"].db
    lookups = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM api_keys" in statement:
            lookups.append(statement)

    event.listen(app_db.engine, "before_cursor_execute", count)
    for _ in range(20):
        assert client.get("/api/v1/jobs", headers=user).status_code == 200
    assert len(lookups) == 1
    with db.session() as s:
        for key in s.scalars(select(ApiKey).where(ApiKey.name == "alice")):
            key.revoked_at = utcnow()
    later = time.monotonic() + RecentKeys.KEEP_SECONDS + 0.1
    monkeypatch.setattr("api.auth.time.monotonic", lambda: later)
    assert client.get("/api/v1/jobs", headers=user).status_code == 401
