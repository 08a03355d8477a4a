"""`flask --app api keys create`: a token printed once, stored only as a hash."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

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
