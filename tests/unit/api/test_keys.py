"""`flask --app api keys`: a token printed once and stored only as a hash; names, limits,
listing, revocation and rotation; the last use."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select

from api import ratelimit
from api.auth import RecentKeys, hash_token
from shared.db import Database
from shared.models import ApiKey
from tests.support import ADMIN_TOKEN


def test_keys_create_prints_a_working_token_stored_hashed(
    app: Flask, client: FlaskClient, db: Database
) -> None:
    result = app.test_cli_runner().invoke(args=["keys", "create", "carol"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("ldr_") and len(token) > 40
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    with db.session() as s:
        keys = list(s.scalars(select(ApiKey)))
    carol = next(k for k in keys if k.name == "carol")
    assert not carol.is_admin
    assert all(token not in (k.token_hash, k.name) for k in keys)


def test_admin_keys_see_every_job(app: Flask, client: FlaskClient, user: dict[str, str]) -> None:
    result = app.test_cli_runner().invoke(args=["keys", "create", "ops", "--admin"])
    token = result.stdout.strip().splitlines()[-1]
    job = client.post(
        "/api/v1/jobs", json={"kind": "stairs", "params": {"n": 1}}, headers=user
    ).get_json()
    ops = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=ops).status_code == 200
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=ops).get_json()["items"]] == [
        job["id"]
    ]


def test_the_seeded_admin_token_is_stored_hashed(app: Flask, db: Database) -> None:
    with db.session() as s:
        (admin,) = s.scalars(select(ApiKey).where(ApiKey.name == "admin"))
    assert admin.is_admin and admin.token_hash != ADMIN_TOKEN and len(admin.token_hash) == 64


def test_a_dump_of_the_whole_database_reveals_no_token(
    app: Flask, client: FlaskClient, db: Database, sqlite_url: str, user: dict[str, str]
) -> None:
    token = user["Authorization"].removeprefix("Bearer ")
    client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 4}}, headers=user)
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as raw:
        dump = "\n".join(raw.iterdump())
    assert "INSERT INTO" in dump and hash_token(token) in dump
    for secret in (token, ADMIN_TOKEN, token[4:20]):
        assert secret not in dump


def test_requests_past_the_keys_limit_get_429_with_retry_after(
    client: FlaskClient,
    app: Flask,
    user: dict[str, str],
    other_user: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 50 s before the next minute, all along: no window ends during the test.
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 60 * 1000 + 10.0))
    app.extensions["ladder"].settings = dataclasses.replace(
        app.extensions["ladder"].settings, rate_limit=5
    )
    answers = [client.get("/api/v1/jobs", headers=user) for _ in range(7)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 2
    refused = answers[-1]
    assert refused.mimetype == "application/problem+json"
    assert "LADDER_RATE_LIMIT" in refused.get_json()["detail"]
    assert refused.headers["Retry-After"] == "50"
    refused = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 1}}, headers=user)
    assert refused.status_code == 429
    assert client.get("/api/v1/jobs", headers=other_user).status_code == 200  # per key


# `keys create` limits and names, `list`, `revoke`, `rotate` ----------------------------------


def keys_cli(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["keys", *args])


def live_keys(db: Database, name: str) -> list[ApiKey]:
    with db.session() as s:
        query = select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        return list(s.scalars(query))


def expire_recent_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Move this process's clock past RecentKeys.KEEP_SECONDS, as 5 s of waiting would."""
    later = time.monotonic() + RecentKeys.KEEP_SECONDS + 0.1
    monkeypatch.setattr("api.auth.time.monotonic", lambda: later)


def test_create_stores_the_keys_own_limits(app: Flask, db: Database) -> None:
    result = keys_cli(app, "create", "batch", "--max-active", "50", "--max-priority", "3")
    assert result.exit_code == 0, result.output
    (key,) = live_keys(db, "batch")
    assert (key.max_active_jobs, key.max_priority, key.is_admin) == (50, 3, False)


@pytest.mark.parametrize(
    "option", [["--max-active", "0"], ["--max-priority", "10"], ["--max-priority", "-1"]]
)
def test_create_refuses_limits_out_of_range_and_makes_nothing(
    app: Flask, db: Database, option: list[str]
) -> None:
    result = keys_cli(app, "create", "batch", *option)
    assert result.exit_code == 2 and option[0] in result.stderr
    assert result.stdout == "" and live_keys(db, "batch") == []


def test_a_live_name_cannot_be_taken_twice_but_a_revoked_one_frees_it(
    app: Flask, db: Database
) -> None:
    first = keys_cli(app, "create", "carol")
    again = keys_cli(app, "create", "carol", "--admin")
    assert again.exit_code == 1 and "'carol'" in again.stderr and again.stdout == ""
    (key,) = live_keys(db, "carol")
    assert not key.is_admin and key.token_hash == hash_token(first.stdout.strip())
    assert keys_cli(app, "revoke", "carol").exit_code == 0
    assert keys_cli(app, "create", "carol").exit_code == 0
    assert len(live_keys(db, "carol")) == 1


def test_list_shows_each_key_and_never_a_token_or_hash(
    app: Flask, client: FlaskClient, db: Database
) -> None:
    busy = keys_cli(app, "create", "busy", "--max-priority", "2").stdout.strip()
    idle = keys_cli(app, "create", "idle").stdout.strip()
    keys_cli(app, "revoke", "idle")
    with_busy = {"Authorization": f"Bearer {busy}"}
    assert client.get("/api/v1/jobs", headers=with_busy).status_code == 200
    result = keys_cli(app, "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["name", "admin", "created", "last", "used", "limits", "revoked"]
    by_name = {row.split()[0]: row for row in rows}
    assert set(by_name) == {"admin", "busy", "idle"}
    assert "yes (seeded)" in by_name["admin"]
    assert "priority<=2" in by_name["busy"] and "never" not in by_name["busy"]
    assert by_name["idle"].rstrip().endswith("Z") and "never" in by_name["idle"]
    assert rows[-1] == by_name["idle"]  # live keys first
    with db.session() as s:
        hashes = list(s.scalars(select(ApiKey.token_hash)))
    for secret in [busy, idle, *hashes, busy[4:20], hashes[0][:16]]:
        assert secret not in result.output


def test_a_revoked_key_gets_401_once_the_api_asks_the_database_again(
    app: Flask, client: FlaskClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = keys_cli(app, "create", "leaky").stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    result = keys_cli(app, "revoke", "leaky")
    assert result.exit_code == 0 and "within 5 s" in result.stderr
    expire_recent_keys(monkeypatch)
    assert client.get("/api/v1/jobs", headers=headers).status_code == 401
    again = keys_cli(app, "revoke", "leaky")
    assert again.exit_code == 1 and "no live key named 'leaky'" in again.stderr
    assert keys_cli(app, "revoke", "nobody").exit_code == 1


def test_rotate_keeps_the_row_and_swaps_the_token(
    app: Flask, client: FlaskClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = keys_cli(app, "create", "svc", "--max-active", "7").stdout.strip()
    (before,) = live_keys(db, "svc")
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {old}"}).status_code == 200
    result = keys_cli(app, "rotate", "svc")
    assert result.exit_code == 0, result.output
    new = result.stdout.splitlines()[-1]
    assert result.stdout == new + "\n" and new.startswith("ldr_") and new != old
    (after,) = live_keys(db, "svc")
    assert (after.id, after.max_active_jobs, after.token_hash) == (before.id, 7, hash_token(new))
    expire_recent_keys(monkeypatch)
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_rotate_refuses_unknown_revoked_and_seeded_keys(app: Flask, db: Database) -> None:
    keys_cli(app, "create", "gone")
    keys_cli(app, "revoke", "gone")
    for name in ("nobody", "gone"):
        refused = keys_cli(app, "rotate", name)
        assert refused.exit_code == 1 and f"no live key named {name!r}" in refused.stderr
    (seeded,) = live_keys(db, "admin")
    refused = keys_cli(app, "rotate", "admin")
    assert refused.exit_code == 1 and "LADDER_ADMIN_TOKEN" in refused.stderr
    assert refused.stdout == "" and live_keys(db, "admin")[0].token_hash == seeded.token_hash


def test_the_help_says_how_soon_a_revocation_bites(app: Flask) -> None:
    for command in ([], ["revoke"], ["rotate"]):
        assert "within 5 s" in " ".join(keys_cli(app, *command, "--help").output.split())


# last use ------------------------------------------------------------------------------------


def test_the_last_use_is_written_on_a_lookup_not_on_every_request(
    app: Flask, client: FlaskClient, db: Database, user: dict[str, str]
) -> None:
    (alice,) = live_keys(db, "alice")
    assert alice.last_used_at is None
    updates = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE api_keys"):
            updates.append(statement)

    event.listen(app.extensions["ladder"].db.engine, "before_cursor_execute", count)
    for _ in range(20):
        assert client.get("/api/v1/jobs", headers=user).status_code == 200
    assert len(updates) == 1
    (alice,) = live_keys(db, "alice")
    assert alice.last_used_at is not None
