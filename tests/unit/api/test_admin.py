"""The dashboard's doors: sign-in (no cookie before it, same origin only), cookie flags, CSRF,
admins only, and security headers."""

from __future__ import annotations

import json
import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared import workers
from shared.db import Database
from tests.support import ADMIN_TOKEN, job_count

ADMIN_PAGES = ["/admin/", "/admin/jobs", "/admin/workers", "/admin/api/overview", "/admin/api/jobs",
               "/admin/api/workers"]  # fmt: skip
SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: FlaskClient, token: str) -> object:
    # As a browser posts the form: from the page's own origin.
    return client.post("/admin/login", data={"token": token}, headers=SAME_ORIGIN)


def test_pages_send_you_to_sign_in_first(client: FlaskClient) -> None:
    r = client.get("/admin/jobs")
    assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login")
    assert client.get("/admin/api/overview").status_code == 401


def test_an_admin_token_signs_in_to_a_strict_http_only_cookie(client: FlaskClient) -> None:
    r = sign_in(client, ADMIN_TOKEN)
    assert r.status_code == 302  # type: ignore[attr-defined]
    cookie = r.headers["Set-Cookie"]  # type: ignore[attr-defined]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    for page in ADMIN_PAGES:
        assert client.get(page).status_code == 200, page


def test_the_cookie_is_secure_over_tls(app: Flask) -> None:
    client = app.test_client()
    r = client.post("/admin/login", data={"token": ADMIN_TOKEN},
                    base_url="https://ladder.example",
                    headers={"Origin": "https://ladder.example"})  # fmt: skip
    assert "Secure" in r.headers["Set-Cookie"]


def test_the_login_page_sets_no_cookie_and_a_failed_sign_in_none_either(
    client: FlaskClient,
) -> None:
    page = client.get("/admin/login")
    assert page.status_code == 200 and "Set-Cookie" not in page.headers
    assert 'name="csrf"' not in page.text  # nothing signed with the secret key to take away
    failed = sign_in(client, "ldr_a-guess")
    assert failed.status_code == 401  # type: ignore[attr-defined]
    assert "Set-Cookie" not in failed.headers  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://other.localhost"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # a sandboxed frame or a data: URL
        {"Origin": "https://localhost"},  # another scheme is another origin
    ],
)
def test_a_sign_in_form_posted_from_another_site_is_refused(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    r = client.post("/admin/login", data={"token": ADMIN_TOKEN}, headers=headers)
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    assert "Set-Cookie" not in r.headers


def test_wrong_and_non_admin_tokens_cannot_sign_in(
    client: FlaskClient, user: dict[str, str]
) -> None:
    assert sign_in(client, "nope").status_code == 401  # type: ignore[attr-defined]
    token = user["Authorization"].removeprefix("Bearer ")
    assert sign_in(client, token).status_code == 403  # type: ignore[attr-defined]
    assert client.get("/admin/").status_code == 302


def test_non_admin_tokens_get_403_on_every_admin_route(
    app: Flask, client: FlaskClient, user: dict[str, str]
) -> None:
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/admin", "/api/v1/workers", "/api/v1/stats")):
            continue
        if rule.endpoint in {"admin.login", "admin.static"}:
            continue
        path = re.sub(r"<[^>]+>", "x", rule.rule)
        method = "POST" if "POST" in rule.methods else "GET"
        r = client.open(path, method=method, headers=user)
        assert r.status_code == 403, (path, r.status_code)


def test_forms_need_the_csrf_token(client: FlaskClient) -> None:
    sign_in(client, ADMIN_TOKEN)
    assert client.post("/admin/jobs/x/cancel").status_code == 403
    assert client.post("/admin/jobs/x/retry", data={"csrf": "forged"}).status_code == 403


def test_pages_carry_security_headers_and_load_nothing_from_elsewhere(client: FlaskClient) -> None:
    sign_in(client, ADMIN_TOKEN)
    r = client.get("/admin/")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert not re.search(r'(src|href)="(https?:)?//', r.text)
    with client.get("/admin/static/admin.js") as script:
        assert script.status_code == 200


def test_sign_in_never_redirects_off_the_dashboard(client: FlaskClient) -> None:
    r = client.post("/admin/login?next=https://evil.example/", data={"token": ADMIN_TOKEN},
                    headers=SAME_ORIGIN)  # fmt: skip
    assert r.headers["Location"] == "/admin/"


@pytest.mark.parametrize("route", ["/api/v1/workers", "/api/v1/stats"])
def test_admin_api_routes(
    client: FlaskClient, admin: dict[str, str], user: dict[str, str], route: str
) -> None:
    assert client.get(route).status_code == 401
    assert client.get(route, headers=user).status_code == 403
    assert client.get(route, headers=admin).status_code == 200


def test_workers_go_offline_after_three_missed_beats(
    app: Flask, client: FlaskClient, admin: dict[str, str]
) -> None:
    redis = app.extensions["ladder"].redis
    workers.beat(redis, "cpu@a", {"name": "cpu@a", "pool": "cpu"})
    stale = {"name": "cpu@b", "pool": "cpu", "seen_at": time.time() - 3 * workers.INTERVAL - 1}
    redis.set("ladder:worker:cpu@b", json.dumps(stale))
    states = {
        w["name"]: w["state"]
        for w in client.get("/api/v1/workers", headers=admin).get_json()["items"]
    }
    assert states == {"cpu@a": "online", "cpu@b": "offline"}


def test_jobs_can_be_submitted_from_the_dashboard(client: FlaskClient, db: Database) -> None:
    sign_in(client, ADMIN_TOKEN)
    csrf = csrf_of(client.get("/admin/jobs").text)
    bad = client.post("/admin/jobs", data={"kind": "stairs", "params": '{"n": -1}', "csrf": csrf})
    assert bad.status_code == 422 and "params.n" in bad.text
    broken = client.post("/admin/jobs", data={"kind": "stairs", "params": "{n:", "csrf": csrf})
    assert broken.status_code == 400 and "not valid JSON" in broken.text
    assert job_count(db) == 0
    good = client.post("/admin/jobs", data={"kind": "stairs", "params": '{"n": 5}', "csrf": csrf})
    assert good.status_code == 302 and good.headers["Location"].startswith("/admin/jobs/")
    assert job_count(db) == 1
    assert client.post("/admin/jobs", data={"kind": "stairs", "params": "{}"}).status_code == 403


def test_a_jobs_event_stream_on_the_dashboard_runs_to_its_end(
    client: FlaskClient, user: dict[str, str]
) -> None:
    job = client.post(
        "/api/v1/jobs", json={"kind": "stairs", "params": {"n": 2}}, headers=user
    ).get_json()
    client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=user)
    sign_in(client, ADMIN_TOKEN)
    r = client.get(f"/admin/jobs/{job['id']}/events")
    assert r.mimetype == "text/event-stream"
    body = r.get_data(as_text=True)
    assert '"status": "cancelled"' in body and body.rstrip().endswith(
        'data: {"status": "cancelled"}'
    )
    assert client.get("/admin/jobs/not-a-job/events").status_code == 404
