"""`flask --app api keys create`: a token printed once, stored only as a hash."""

from __future__ import annotations

import dataclasses
import sqlite3
from types import SimpleNamespace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api import ratelimit
from api.auth import hash_token
from shared.db import Database
from shared.models import ApiKey


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
    assert admin.is_admin and admin.token_hash != "admin-token" and len(admin.token_hash) == 64


def test_a_dump_of_the_whole_database_reveals_no_token(
    app: Flask, client: FlaskClient, db: Database, sqlite_url: str, user: dict[str, str]
) -> None:
    token = user["Authorization"].removeprefix("Bearer ")
    client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 4}}, headers=user)
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as raw:
        dump = "\n".join(raw.iterdump())
    assert "INSERT INTO" in dump and hash_token(token) in dump
    for secret in (token, "admin-token", token[4:20]):
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
