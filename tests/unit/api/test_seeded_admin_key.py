"""The admin key seeded from LADDER_ADMIN_TOKEN: one at a time, replaced when the variable
changes, never clobbering a key made by hand, and safe when several processes start at once."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import fakeredis
import pytest
from flask import Flask
from sqlalchemy import select

from api import create_app
from api.auth import RecentKeys, hash_token
from api.keys import seed_admin_key
from shared.config import Settings
from shared.db import Database
from shared.models import ApiKey

NEW_TOKEN = "a-new-admin-token-of-forty-characters-xx"


def seeded(db: Database) -> list[ApiKey]:
    """The live seeded keys."""
    with db.session() as s:
        query = select(ApiKey).where(ApiKey.seeded.is_(True), ApiKey.revoked_at.is_(None))
        return list(s.scalars(query))


def restart(settings: Settings) -> Flask:
    """Another API process on the same database, as a restart or a second gunicorn worker."""
    app = create_app(settings)
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    return app


def status(app: Flask, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return app.test_client().get("/api/v1/jobs", headers=headers).status_code


def test_a_new_admin_token_revokes_the_key_seeded_from_the_old_one(
    app: Flask, settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.admin_token
    (old,) = seeded(db)
    assert status(app, settings.admin_token) == 200
    restart(settings).extensions["ladder"].db.engine.dispose()  # the same token again
    assert [k.id for k in seeded(db)] == [old.id]

    renewed = restart(dataclasses.replace(settings, admin_token=NEW_TOKEN))
    (new,) = seeded(db)
    assert (new.name, new.is_admin, new.token_hash) == ("admin", True, hash_token(NEW_TOKEN))
    assert status(renewed, NEW_TOKEN) == 200
    assert status(renewed, settings.admin_token) == 401
    # The process that still runs with the old token forgets it once its lookup expires.
    later = time.monotonic() + RecentKeys.KEEP_SECONDS + 0.1
    monkeypatch.setattr("api.auth.time.monotonic", lambda: later)
    assert status(app, settings.admin_token) == 401
    assert status(app, NEW_TOKEN) == 200
    renewed.extensions["ladder"].db.engine.dispose()


def test_a_key_made_by_hand_keeps_the_name_admin(app: Flask, db: Database) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["keys", "revoke", "admin"])
    made = runner.invoke(args=["keys", "create", "admin", "--admin"]).stdout.strip()
    seed_admin_key(db, NEW_TOKEN)
    (key,) = seeded(db)
    assert key.name == "admin-seeded" and key.token_hash == hash_token(NEW_TOKEN)
    with db.session() as s:
        query = select(ApiKey).where(ApiKey.name == "admin", ApiKey.revoked_at.is_(None))
        (by_hand,) = s.scalars(query)
    assert not by_hand.seeded and by_hand.token_hash == hash_token(made)


def test_a_revoked_admin_token_is_not_brought_back_by_a_restart(
    app: Flask, settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    assert settings.admin_token
    app.test_cli_runner().invoke(args=["keys", "revoke", "admin"])
    with caplog.at_level(logging.WARNING, logger="api.keys"):
        restarted = restart(settings)
    assert seeded(db) == []
    assert status(restarted, settings.admin_token) == 401
    assert "set a new one" in caplog.text
    restarted.extensions["ladder"].db.engine.dispose()


def test_processes_starting_together_seed_exactly_one_key(
    app: Flask, settings: Settings, db: Database
) -> None:
    starters = 6
    barrier = threading.Barrier(starters)
    errors: list[BaseException] = []

    def start() -> None:
        own = Database(settings.database_url)  # each "process" its own connections
        try:
            barrier.wait()
            seed_admin_key(own, NEW_TOKEN)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)
        finally:
            own.engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    (key,) = seeded(db)
    assert key.token_hash == hash_token(NEW_TOKEN)
    with db.session() as s:
        assert len(list(s.scalars(select(ApiKey).where(ApiKey.name.like("admin%"))))) == 2
