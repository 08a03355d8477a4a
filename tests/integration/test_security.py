"""The API's doors over real HTTP, on the real Redis and database, as a hostile client meets
them: no start without a secret key, no cookie before sign-in, no sign-in from another site,
guessers slowed per address across API processes, and forwarded headers believed only from
trusted proxies."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import redis

from scripts import processes as commands
from scripts.run import free_port
from shared.config import Settings
from shared.db import Database
from tests.processes import Stack, ladder_env, served_app
from tests.support import ADMIN_TOKEN, Client, Reply, early_in_a_minute, job_count

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def served(settings: Settings) -> Iterator[str]:
    """Another API process on the stack's Redis and database, with these settings. Every
    client here is 127.0.0.1: the failed authentications counted against it are cleared before
    (an earlier test's would count) and after (for later tests)."""
    forget_failures(settings)
    try:
        with served_app(settings) as base:
            yield base
    finally:
        forget_failures(settings)


def forget_failures(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.broker_url)
    for key in client.scan_iter("ladder:authfail:*"):
        client.delete(key)


def post_form(base: str, path: str, form: dict[str, str], headers: dict[str, str]) -> Reply:
    """POST a form as a browser would, without following the redirect that answers it."""
    address = urlsplit(base)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    conn.request("POST", path, urlencode(form), {
        "Content-Type": "application/x-www-form-urlencoded", **headers})  # fmt: skip
    response = conn.getresponse()
    reply = Reply(response.status, dict(response.getheaders()), response.read())
    conn.close()
    return reply


def bad(n: int) -> dict[str, str]:
    return {"Authorization": f"Bearer ldr_a-guess-{n}"}


def good() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"LADDER_SECRET_KEY": ""}, "LADDER_SECRET_KEY"),
        ({"LADDER_SECRET_KEY": "too-short"}, "LADDER_SECRET_KEY"),
        ({"LADDER_ADMIN_TOKEN": "admin-token"}, "LADDER_ADMIN_TOKEN"),
    ],
)
def test_the_api_process_refuses_to_start_without_a_secret_key_or_with_a_short_token(
    stack: Stack, tmp_path: Path, change: dict[str, str], named: str
) -> None:
    # An empty var dir: no secret-key file that `make run` left there stands in for the variable.
    env = {**ladder_env(stack.settings), "LADDER_VAR_DIR": str(tmp_path), **change}
    env = {k: v for k, v in env.items() if v}  # "" stands for unset
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.run(
            commands.api(bind=f"127.0.0.1:{free_port()}"),
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False,
        )  # fmt: skip
    text = log.read_text()
    assert api.returncode != 0, text
    assert named in text and "secrets.token_urlsafe(32)" in text, text


def test_the_login_page_sets_no_cookie_and_only_its_own_origin_may_sign_in(
    stack: Stack,
) -> None:
    forget_failures(stack.settings)
    anonymous = Client(stack.base_url)
    page = anonymous.call("GET", "/admin/login")
    assert page.status == 200 and "Set-Cookie" not in page.headers
    assert b'name="csrf"' not in page.body
    # A page elsewhere that posts the sign-in form (login CSRF): refused, and no cookie.
    for headers in [{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
                    {"Origin": "https://evil.example"}, {"Origin": "null"}]:  # fmt: skip
        forged = post_form(stack.base_url, "/admin/login", {"token": ADMIN_TOKEN}, headers)
        assert forged.status == 403, forged.body
        assert forged.headers["Content-Type"] == "application/problem+json"
        assert "Set-Cookie" not in forged.headers
    failed = post_form(stack.base_url, "/admin/login", {"token": "ldr_a-guess"},
                       {"Origin": stack.base_url, "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert failed.status == 401 and "Set-Cookie" not in failed.headers
    signed_in = post_form(stack.base_url, "/admin/login", {"token": ADMIN_TOKEN},
                          {"Origin": stack.base_url, "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert signed_in.status == 302 and signed_in.headers["Set-Cookie"].startswith("ladder_admin=")
    forget_failures(stack.settings)  # the failed sign-in above counted against this address


def test_eleven_bad_tokens_from_one_address_lock_it_out_of_every_api_process(
    stack: Stack,
) -> None:
    db = Database(stack.settings.database_url)
    before = job_count(db)
    limit = stack.settings.auth_failures_per_minute
    assert limit == 10  # the default
    with served(stack.settings) as base:
        guesser = Client(base)
        early_in_a_minute()
        for n in range(limit):
            assert guesser.call("GET", "/api/v1/jobs", headers=bad(n)).status == 401
        refused = guesser.call("GET", "/api/v1/jobs", headers=bad(limit))
        assert refused.status == 429, refused.body
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert "LADDER_AUTH_FAILURES_PER_MINUTE" in refused.json()["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Now the right token is refused as well, here and in the stack's own API process.
        body = {"kind": "stairs", "params": {"n": 5}}
        for client in (Client(base, ADMIN_TOKEN), stack.client):
            blocked = client.call("POST", "/api/v1/jobs", body)
            assert blocked.status == 429 and blocked.headers["Retry-After"], blocked.body
        signed_in = post_form(base, "/admin/login", {"token": ADMIN_TOKEN},
                              {"Sec-Fetch-Site": "same-origin"})  # fmt: skip
        assert signed_in.status == 429 and "Set-Cookie" not in signed_in.headers
        assert job_count(db) == before
    db.engine.dispose()
    assert stack.client.call("GET", "/api/v1/jobs?limit=1").status == 200


def test_forwarded_headers_count_only_from_trusted_proxies(stack: Stack) -> None:
    proxied = dataclasses.replace(stack.settings, trusted_proxies=1)
    tls = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ladder.example",
           "Origin": "https://ladder.example", "Sec-Fetch-Site": "same-origin"}  # fmt: skip
    with served(proxied) as base:
        signed_in = post_form(base, "/admin/login", {"token": ADMIN_TOKEN}, tls)
        assert signed_in.status == 302 and "; Secure" in signed_in.headers["Set-Cookie"]
        client = Client(base)
        guesser = {"X-Forwarded-For": "203.0.113.9"}
        early_in_a_minute()
        for n in range(proxied.auth_failures_per_minute + 1):
            client.call("GET", "/api/v1/jobs", headers={**bad(n), **guesser})
        assert client.call("GET", "/api/v1/jobs", headers={**good(), **guesser}).status == 429
        # Other clients behind the same proxy are not that address.
        other = {"X-Forwarded-For": "198.51.100.4"}
        assert client.call("GET", "/api/v1/jobs", headers={**good(), **other}).status == 200
    with served(stack.settings) as base:  # no trusted proxies: the headers are anybody's
        same = {**tls, "Origin": base}
        signed_in = post_form(base, "/admin/login", {"token": ADMIN_TOKEN}, same)
        assert signed_in.status == 302 and "Secure" not in signed_in.headers["Set-Cookie"]
        client = Client(base)
        early_in_a_minute()
        for n in range(stack.settings.auth_failures_per_minute + 1):
            # A new address named each time is still the one this client sends from.
            client.call("GET", "/api/v1/jobs", headers={**bad(n), "X-Forwarded-For": f"10.0.0.{n}"})
        fresh = {**good(), "X-Forwarded-For": "198.51.100.4"}
        assert client.call("GET", "/api/v1/jobs", headers=fresh).status == 429
