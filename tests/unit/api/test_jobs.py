"""The jobs contract through Flask's test client; messages go to kombu's in-memory broker."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from api import create_app
from shared.config import Settings
from shared.db import Database
from shared.models import ApiKey
from tests.support import ADMIN_TOKEN, job_count

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def submit(client: FlaskClient, headers: dict[str, str], body: Any, **kw: Any) -> Any:
    return client.post("/api/v1/jobs", json=body, headers=headers, **kw)


def test_submit_answers_202_with_location_and_a_queued_job(
    client: FlaskClient, user: dict[str, str]
) -> None:
    r = submit(client, user, {"kind": "stairs", "params": {"n": 10}})
    assert r.status_code == 202
    job = r.get_json()
    assert r.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["attempts"] == 0 and job["queue"] == "cpu"
    assert job["params"] == {"n": 10, "steps": [1, 2], "modulus": None}
    assert job["priority"] == 5 and job["device"] == "auto"
    assert job["created_at"].endswith("Z")
    assert client.get(r.headers["Location"], headers=user).get_json() == job


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "stairs", "params": {"n": -1}}, "params.n"),
        ({"kind": "stairs", "params": {"n": 5.0}}, "params.n"),
        ({"kind": "stairs", "params": {"n": "5"}}, "params.n"),
        ({"kind": "stairs", "params": {"n": True}}, "params.n"),
        ({"kind": "stairs", "params": {"n": 5, "steps": []}}, "params.steps"),
        ({"kind": "stairs", "params": {"n": 5, "steps": [2, 2]}}, "params.steps"),
        ({"kind": "stairs", "params": {"n": 5, "steps": [0]}}, "params.steps.0"),
        ({"kind": "stairs", "params": {"n": 5, "steps": [-1]}}, "params.steps.0"),
        ({"kind": "stairs", "params": {"n": 5, "modulus": 1}}, "params.modulus"),
        ({"kind": "stairs", "params": {"n": 10_000_001}}, "params.n"),
        ({"kind": "stairs", "params": {"n": 10**19, "modulus": 7}}, "params.n"),
        ({"kind": "stairs", "params": [1]}, "params"),
        ({"kind": "stairs", "params": {"n": 1}, "priority": 10}, "priority"),
        ({"kind": "stairs", "params": {"n": 1}, "priority": "1"}, "priority"),
        ({"kind": "stairs", "params": {"n": 1}, "device": "tpu"}, "device"),
        ({"kind": "stairs", "params": {"n": 1}, "device": "gpu"}, "device"),
        ({"kind": "nope", "params": {}}, "kind"),
        ({"params": {"n": 1}}, "kind"),
        ({"kind": "stairs", "params": {"n": 1}, "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_creates_nothing(
    client: FlaskClient, user: dict[str, str], db: Database, body: Any, field: str
) -> None:
    r = submit(client, user, body)
    assert r.status_code == 422
    assert r.mimetype == "application/problem+json"
    problem = r.get_json()
    assert problem["status"] == 422 and problem["title"] and problem["detail"]
    assert field in [e["field"] for e in problem["errors"]], problem
    assert job_count(db) == 0


def test_limit_errors_name_the_limit(client: FlaskClient, user: dict[str, str]) -> None:
    r = submit(client, user, {"kind": "stairs", "params": {"n": 10_000_001}})
    assert "max_n_fib" in r.get_json()["errors"][0]["message"]
    assert "10000000" in r.get_json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('{"kind": "stairs", "params": {"n": NaN}}', "application/json", 400),
        ('{"kind": "stairs", "params": {"n": ' + "9" * 5000 + "}}", "application/json", 400),
        ("[" * 100_000 + "]" * 100_000, "application/json", 400),
        (
            '{"kind": "stairs", "params": {"n": 1, "x": ' + "[" * 40 + "]" * 40 + "}}",
            "application/json",
            400,
        ),
        (r'{"kind": "stairs\u0000", "params": {"n": 1}}', "application/json", 422),
        (
            r'{"kind": "generate", "params": {"prompt": "hi \ud800", "stop": ["\ufeff\u202e"]}}',
            "application/json",
            400,
        ),
        ('{"kind": "stairs"}', "text/plain", 415),
        ("kind=stairs", "application/x-www-form-urlencoded", 415),
        (
            '{"kind": "stairs", "params": {"n": 1}, "pad": "' + "x" * 2_000_000 + '"}',
            "application/json",
            413,
        ),
    ],
)
def test_malformed_bodies_get_clear_4xx(
    client: FlaskClient,
    user: dict[str, str],
    db: Database,
    data: str,
    content_type: str,
    status: int,
) -> None:
    r = client.post("/api/v1/jobs", data=data, content_type=content_type, headers=user)
    assert r.status_code == status
    assert r.mimetype == "application/problem+json"
    assert r.get_json()["status"] == status
    assert job_count(db) == 0


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer wrong", "Basic YWRtaW46YWRtaW4=", ADMIN_TOKEN]
)
def test_no_or_bad_token_is_401(client: FlaskClient, header: str | None, db: Database) -> None:
    headers = {"Authorization": header} if header else {}
    r = submit(client, headers, {"kind": "stairs", "params": {"n": 1}})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/jobs", headers=headers).status_code == 401
    assert job_count(db) == 0


def test_revoked_key_is_refused(client: FlaskClient, user: dict[str, str], db: Database) -> None:
    from shared.models import utcnow

    with db.session() as s:
        for key in s.scalars(select(ApiKey).where(ApiKey.name == "alice")):
            key.revoked_at = utcnow()
    assert submit(client, user, {"kind": "stairs", "params": {"n": 1}}).status_code == 401


def test_other_keys_jobs_are_404_but_admins_see_them(
    client: FlaskClient, user: dict[str, str], other_user: dict[str, str], admin: dict[str, str]
) -> None:
    job = submit(client, user, {"kind": "stairs", "params": {"n": 3}}).get_json()
    url = f"/api/v1/jobs/{job['id']}"
    assert client.get(url, headers=other_user).status_code == 404
    assert client.post(f"{url}/cancel", headers=other_user).status_code == 404
    assert client.get(f"{url}/artifacts/value.txt", headers=other_user).status_code == 404
    assert client.get("/api/v1/jobs", headers=other_user).get_json()["items"] == []
    assert client.get(url, headers=admin).status_code == 200
    assert client.get("/api/v1/jobs/not-a-job", headers=user).status_code == 404


def test_list_is_newest_first_with_filters_and_a_cursor(
    client: FlaskClient, user: dict[str, str]
) -> None:
    ids = [
        submit(client, user, {"kind": "stairs", "params": {"n": n}}).get_json()["id"]
        for n in range(7)
    ]
    seen: list[str] = []
    url = "/api/v1/jobs?limit=3"
    while True:
        page = client.get(url, headers=user).get_json()
        assert len(page["items"]) <= 3
        seen += [j["id"] for j in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"/api/v1/jobs?limit=3&cursor={page['next_cursor']}"
    assert seen == ids[::-1]
    assert (
        len(client.get("/api/v1/jobs?status=queued&kind=stairs", headers=user).get_json()["items"])
        == 7
    )
    assert client.get("/api/v1/jobs?status=succeeded", headers=user).get_json()["items"] == []
    assert client.get("/api/v1/jobs?kind=other", headers=user).get_json()["items"] == []


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=x", "status=done", "cursor=%%%", "cursor=abc"]
)
def test_bad_list_queries_are_422(client: FlaskClient, user: dict[str, str], query: str) -> None:
    r = client.get(f"/api/v1/jobs?{query}", headers=user)
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["field"] == query.split("=", maxsplit=1)[0]


def test_idempotency_key(
    client: FlaskClient, user: dict[str, str], other_user: dict[str, str], db: Database
) -> None:
    body = {"kind": "stairs", "params": {"n": 12}}
    first = submit(client, {**user, "Idempotency-Key": "k1"}, body)
    again = submit(client, {**user, "Idempotency-Key": "k1"}, body)
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    other_body = {"kind": "stairs", "params": {"n": 13}}
    clash = submit(client, {**user, "Idempotency-Key": "k1"}, other_body)
    assert clash.status_code == 409 and clash.mimetype == "application/problem+json"
    # Keys belong to one API key: another client's "k1" is its own.
    theirs = submit(client, {**other_user, "Idempotency-Key": "k1"}, body)
    assert theirs.status_code == 202 and theirs.get_json()["id"] != first.get_json()["id"]
    assert job_count(db) == 2
    too_long = submit(client, {**user, "Idempotency-Key": "x" * 256}, body)
    assert too_long.status_code == 422


def test_cancel_a_queued_job(client: FlaskClient, user: dict[str, str]) -> None:
    job = submit(client, user, {"kind": "stairs", "params": {"n": 3}}).get_json()
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=user)
    assert r.status_code == 200
    assert r.get_json()["status"] == "cancelled"
    assert r.get_json()["error"]["code"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=user)
    assert again.status_code == 409


def test_kinds_publish_their_schema_and_limits(client: FlaskClient) -> None:
    kinds = client.get("/api/v1/kinds").get_json()["items"]
    stairs = next(k for k in kinds if k["name"] == "stairs")
    assert stairs["pools"] == ["cpu"]
    assert stairs["params_schema"]["required"] == ["n"]
    assert stairs["limits"]["max_n_fib"] == 10_000_000
    assert stairs["limits"]["time_limit_seconds"] == 120


def test_health(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()


def test_unknown_routes_and_methods_are_problems(client: FlaskClient, user: dict[str, str]) -> None:
    r = client.get("/api/v1/nothing", headers=user)
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    r = client.delete("/api/v1/jobs", headers=user)
    assert r.status_code == 405 and "Allow" in r.headers


def test_a_broker_that_is_down_gives_503_and_keeps_no_job(settings: Settings, db: Database) -> None:
    down = dataclasses.replace(settings, broker_url="redis://127.0.0.1:1/0")
    app = create_app(down)
    client = app.test_client()
    r = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 1}}, headers=ADMIN)
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert r.headers["Retry-After"]
    assert job_count(db) == 0
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["database"] == "ok"
    assert ready.get_json()["checks"]["broker"].startswith("error")
    app.extensions["ladder"].db.engine.dispose()


def test_a_database_that_is_down_gives_503_not_500(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "gone.db").mkdir()  # a directory where the database file should be
    broken = dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path}/gone.db")
    app = create_app(broken)
    client = app.test_client()
    r = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 1}}, headers=ADMIN)
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert "database" in r.get_json()["detail"]
    assert client.get("/readyz").status_code == 503
    app.extensions["ladder"].db.engine.dispose()


@pytest.mark.parametrize("job_id", ["%00", "not-a-uuid", "1; DROP TABLE jobs", "%C3%A9" * 40])
def test_ids_that_are_not_job_ids_are_404(
    client: FlaskClient, user: dict[str, str], job_id: str
) -> None:
    for path in ("", "/events", "/artifacts/value.txt"):
        r = client.get(f"/api/v1/jobs/{job_id}{path}", headers=user)
        assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=user).status_code == 404


def test_odd_artifact_names_and_filters_are_refused_cleanly(
    client: FlaskClient, user: dict[str, str]
) -> None:
    job = submit(client, user, {"kind": "stairs", "params": {"n": 3}}).get_json()
    for name in ("%00", "..%2Fetc", "value.txt%00"):
        assert (
            client.get(f"/api/v1/jobs/{job['id']}/artifacts/{name}", headers=user).status_code
            == 404
        )
    r = client.get("/api/v1/jobs?kind=%00", headers=user)
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "kind"


@pytest.mark.parametrize("key", ["tab\there", "nul\x00", "é-accent", "bell\x07"])
def test_idempotency_keys_must_be_printable_ascii(
    client: FlaskClient, user: dict[str, str], db: Database, key: str
) -> None:
    from werkzeug.datastructures import Headers

    headers = Headers(user)
    headers.add("Idempotency-Key", key)
    r = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 1}}, headers=headers)
    assert r.status_code == 422, key
    assert job_count(db) == 0
