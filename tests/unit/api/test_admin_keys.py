"""The dashboard's Keys page: admins see every key and revoke one in two steps, each POST with
the session's CSRF token, and never the key they are signed in with."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from api import keys
from api.auth import create_key
from shared.config import Settings
from shared.db import Database
from shared.models import ApiKey

SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: FlaskClient, token: str) -> None:
    # As a browser posts the form: from the page's own origin.
    client.post("/admin/login", data={"token": token}, headers=SAME_ORIGIN)


@pytest.fixture
def signed_in(client: FlaskClient, settings: Settings) -> FlaskClient:
    sign_in(client, settings.admin_token or "")
    return client


def key_named(db: Database, name: str) -> ApiKey:
    with db.session() as s:
        (key,) = s.scalars(select(ApiKey).where(ApiKey.name == name))
    return key


def test_the_keys_page_lists_every_key_and_no_token(
    signed_in: FlaskClient, db: Database, settings: Settings
) -> None:
    token = create_key(db, "alice", max_active_jobs=3)
    page = signed_in.get("/admin/keys")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<a href="/admin/keys">Keys</a>' in signed_in.get("/admin/").text
    alice = key_named(db, "alice")
    row = re.search(rf'<tr data-key="{alice.id}".*?</tr>', page.text, re.S)
    assert row and "active&lt;=3" in row.group(0) and "never" in row.group(0)
    assert f"/admin/keys/{alice.id}/revoke" in row.group(0)
    admin = key_named(db, "admin")
    mine = re.search(rf'<tr data-key="{admin.id}".*?</tr>', page.text, re.S)
    assert mine and "yes (seeded)" in mine.group(0) and "/revoke" not in mine.group(0)
    for secret in (token, alice.token_hash, admin.token_hash, settings.admin_token or "-"):
        assert secret not in page.text


def test_revoking_takes_a_confirm_page_and_a_form_with_the_csrf_token(
    signed_in: FlaskClient, db: Database
) -> None:
    create_key(db, "alice")
    key_id = key_named(db, "alice").id
    url = f"/admin/keys/{key_id}/revoke"
    confirm = signed_in.get(url)
    assert confirm.status_code == 200 and 'name="confirm" value="yes"' in confirm.text
    csrf = csrf_of(confirm.text)

    assert signed_in.post(url, data={"confirm": "yes"}).status_code == 403
    assert signed_in.post(url, data={"confirm": "yes", "csrf": "forged"}).status_code == 403
    unconfirmed = signed_in.post(url, data={"csrf": csrf})
    assert unconfirmed.status_code == 400 and 'value="yes"' in unconfirmed.text
    assert key_named(db, "alice").revoked_at is None

    done = signed_in.post(url, data={"confirm": "yes", "csrf": csrf})
    assert done.status_code == 302 and done.headers["Location"] == f"/admin/keys?revoked={key_id}"
    assert key_named(db, "alice").revoked_at is not None
    listing = signed_in.get(done.headers["Location"]).text
    assert "Key &#39;alice&#39; is revoked" in listing and "within 5 s" in listing
    again = signed_in.post(url, data={"confirm": "yes", "csrf": csrf})
    assert again.status_code == 409 and "revoked already" in again.text


def test_an_admin_cannot_revoke_the_key_they_are_signed_in_with(
    signed_in: FlaskClient, db: Database
) -> None:
    admin = key_named(db, "admin")
    url = f"/admin/keys/{admin.id}/revoke"
    page = signed_in.get(url)
    assert "You are signed in with key" in page.text and 'name="confirm"' not in page.text
    refused = signed_in.post(url, data={"confirm": "yes", "csrf": csrf_of(page.text)})
    assert refused.status_code == 409 and "sign in with another admin key" in refused.text
    assert key_named(db, "admin").revoked_at is None
    assert signed_in.get("/admin/keys").status_code == 200  # still signed in


def test_a_revoked_admins_dashboard_session_ends_at_once(
    app: Flask, signed_in: FlaskClient, db: Database
) -> None:
    other = app.test_client()
    sign_in(other, create_key(db, "ops", admin=True))
    assert other.get("/admin/keys").status_code == 200
    url = f"/admin/keys/{key_named(db, 'ops').id}/revoke"
    csrf = csrf_of(signed_in.get(url).text)
    assert signed_in.post(url, data={"confirm": "yes", "csrf": csrf}).status_code == 302
    assert other.get("/admin/keys").status_code == 302  # back to the sign-in page


@pytest.mark.parametrize("key_id", ["999", "x", "٣", "9" * 40])
def test_an_unknown_key_is_404(signed_in: FlaskClient, key_id: str) -> None:
    assert signed_in.get(f"/admin/keys/{key_id}/revoke").status_code == 404


def test_other_keys_cannot_see_or_revoke_keys(
    client: FlaskClient, db: Database, user: dict[str, str]
) -> None:
    admin_id = key_named(db, "admin").id
    assert client.get("/admin/keys", headers=user).status_code == 403
    revoke = client.post(f"/admin/keys/{admin_id}/revoke", data={"confirm": "yes"}, headers=user)
    assert revoke.status_code == 403
    assert key_named(db, "admin").revoked_at is None
    assert client.get("/admin/keys").status_code == 302
    assert client.post(f"/admin/keys/{admin_id}/revoke", data={"confirm": "yes"}).status_code == 401


def test_rotating_a_key_ends_the_sessions_it_began(client: FlaskClient, db: Database) -> None:
    token = create_key(db, "ops", admin=True)
    sign_in(client, token)
    assert client.get("/admin/api/jobs").status_code == 200
    new = keys.rotate(db, "ops")
    assert client.get("/admin/api/jobs").status_code == 401  # the leaked token's session is over
    sign_in(client, new)
    assert client.get("/admin/api/jobs").status_code == 200
