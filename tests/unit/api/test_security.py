"""The API's doors as a hostile client meets them: the secrets it will not start without, the
failed-authentication limit per client address, and the proxies whose headers it believes."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from api import create_app, ratelimit
from shared.config import Settings
from shared.db import Database
from tests.support import ADMIN_TOKEN, job_count

GOOD = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
LIMIT = 3


def bad(n: int) -> dict[str, str]:
    return {"Authorization": f"Bearer ldr_guess-{n}"}


@pytest.fixture(autouse=True)
def one_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limits count calendar minutes: a test that crossed into the next one would see its
    count start again. Mid-minute, always."""
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: 1_800_000_030.0))


@pytest.fixture
def guarded(settings: Settings) -> Iterator[Flask]:
    """An app that allows LIMIT failed authentications a minute per client address."""
    app = create_app(dataclasses.replace(settings, auth_failures_per_minute=LIMIT))
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    yield app
    app.extensions["ladder"].db.engine.dispose()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"secret_key": None}, "LADDER_SECRET_KEY"),
        ({"secret_key": "x" * 31}, "LADDER_SECRET_KEY"),
        ({"admin_token": "admin-token"}, "LADDER_ADMIN_TOKEN"),
        ({"admin_token": "y" * 31}, "LADDER_ADMIN_TOKEN"),
    ],
)
def test_the_api_refuses_to_start_without_a_long_secret_key_or_with_a_short_admin_token(
    settings: Settings, change: dict[str, str | None], named: str
) -> None:
    with pytest.raises(RuntimeError, match=named) as refused:
        create_app(dataclasses.replace(settings, **change))  # type: ignore[arg-type]
    assert "secrets.token_urlsafe(32)" in str(refused.value)  # how to make one


def test_the_session_key_is_the_secret_key_and_owes_nothing_to_the_admin_token(
    settings: Settings,
) -> None:
    other = dataclasses.replace(settings, secret_key="another-secret-key-of-32-characters")
    apps = [create_app(settings), create_app(other)]
    assert [app.secret_key for app in apps] == [settings.secret_key, other.secret_key]
    for app in apps:
        app.extensions["ladder"].db.engine.dispose()


def test_bad_tokens_past_the_limit_get_429_even_with_a_good_token_then(
    guarded: Flask, db: Database
) -> None:
    client = guarded.test_client()
    for n in range(LIMIT):
        assert client.get("/api/v1/jobs", headers=bad(n)).status_code == 401
    assert client.get("/api/v1/jobs", headers=GOOD).status_code == 200  # not past it yet
    refused = client.get("/api/v1/jobs", headers=bad(LIMIT))
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert "LADDER_AUTH_FAILURES_PER_MINUTE" in refused.get_json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    body = {"kind": "stairs", "params": {"n": 3}}
    blocked = client.post("/api/v1/jobs", json=body, headers=GOOD)
    assert blocked.status_code == 429 and blocked.headers["Retry-After"]
    assert job_count(db) == 0
    # The count is the address's: another client goes on as before.
    elsewhere = guarded.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    assert elsewhere.post("/api/v1/jobs", json=body, headers=GOOD).status_code == 202


def test_no_token_or_a_malformed_header_is_no_guess(guarded: Flask) -> None:
    client = guarded.test_client()
    basic = {"Authorization": "Basic eA=="}
    for _ in range(LIMIT + 2):
        assert client.get("/api/v1/jobs").status_code == 401
        assert client.get("/api/v1/jobs", headers=basic).status_code == 401
    assert client.get("/api/v1/jobs", headers=GOOD).status_code == 200


def test_failed_sign_ins_count_with_bad_tokens_and_block_a_good_sign_in(guarded: Flask) -> None:
    client = guarded.test_client()
    client.get("/api/v1/jobs", headers=bad(0))
    for n in range(1, LIMIT):
        r = client.post("/admin/login", data={"token": f"ldr_guess-{n}"}, headers=SAME_ORIGIN)
        assert r.status_code == 401
    assert client.get("/api/v1/jobs", headers=bad(LIMIT)).status_code == 429
    r = client.post("/admin/login", data={"token": ADMIN_TOKEN}, headers=SAME_ORIGIN)
    assert r.status_code == 429 and "Set-Cookie" not in r.headers


def test_with_redis_away_authentication_goes_through_unlimited(settings: Settings) -> None:
    app = create_app(dataclasses.replace(settings, auth_failures_per_minute=1))
    # No retries: redis-py's own would take seconds a call to give up on a closed port.
    app.extensions["ladder"].redis = redis.Redis(port=1, retry=Retry(NoBackoff(), 0))
    client = app.test_client()
    try:
        for n in range(3):
            assert client.get("/api/v1/jobs", headers=bad(n)).status_code == 401
        assert client.get("/api/v1/jobs", headers=GOOD).status_code == 200
    finally:
        app.extensions["ladder"].db.engine.dispose()


def test_behind_a_trusted_proxy_its_forwarded_address_and_scheme_are_believed(
    settings: Settings,
) -> None:
    app = create_app(
        dataclasses.replace(settings, trusted_proxies=1, auth_failures_per_minute=LIMIT)
    )
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    client = app.test_client()
    try:
        guesser = {"X-Forwarded-For": "203.0.113.9"}
        for n in range(LIMIT + 1):
            client.get("/api/v1/jobs", headers={**bad(n), **guesser})
        assert client.get("/api/v1/jobs", headers={**GOOD, **guesser}).status_code == 429
        # The proxy itself, and every other client behind it, are not that address.
        assert client.get("/api/v1/jobs", headers=GOOD).status_code == 200
        other = {"X-Forwarded-For": "198.51.100.4"}
        assert client.get("/api/v1/jobs", headers={**GOOD, **other}).status_code == 200
        tls = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ladder.example"}
        signed_in = client.post("/admin/login", data={"token": ADMIN_TOKEN},
                                headers={**tls, "Origin": "https://ladder.example"})  # fmt: skip
        assert signed_in.status_code == 302
        assert "Secure" in signed_in.headers["Set-Cookie"]
    finally:
        app.extensions["ladder"].db.engine.dispose()


def test_without_trusted_proxies_forwarded_headers_are_anybodys_and_ignored(
    guarded: Flask,
) -> None:
    client = guarded.test_client()
    for n in range(LIMIT + 1):
        # A guesser that names a new address each time is still the one address it sends from.
        client.get("/api/v1/jobs", headers={**bad(n), "X-Forwarded-For": f"203.0.113.{n}"})
    fresh = {**GOOD, "X-Forwarded-For": "198.51.100.4"}
    assert client.get("/api/v1/jobs", headers=fresh).status_code == 429
    signed_in = guarded.test_client().post(
        "/admin/login",
        data={"token": ADMIN_TOKEN},
        headers={"X-Forwarded-Proto": "https", **SAME_ORIGIN},
        environ_base={"REMOTE_ADDR": "192.0.2.8"},
    )
    assert signed_in.status_code == 302 and "Secure" not in signed_in.headers["Set-Cookie"]


def test_a_client_is_no_browser_when_it_sends_neither_origin_nor_fetch_metadata(
    client: FlaskClient,
) -> None:
    r = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert r.status_code == 302 and "Set-Cookie" in r.headers


def test_a_short_admin_token_is_only_warned_about_when_the_api_listens_on_loopback(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    short = dataclasses.replace(settings, admin_token="abc")
    with pytest.raises(RuntimeError, match="LADDER_ADMIN_TOKEN"):
        create_app(short)
    app = create_app(dataclasses.replace(short, local_only=True))  # as `make run` on 127.0.0.1
    assert "loopback only" in caplog.text
    app.extensions["ladder"].db.engine.dispose()
