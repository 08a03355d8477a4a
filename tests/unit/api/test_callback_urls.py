"""`callback_url` at submit (checked, with host names resolved by a stub), a job's `webhook`
object, and the webhook secret: read by its key, new with each `keys rotate`."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from shared import webhooks
from shared.db import Database
from shared.models import ApiKey, Job, WebhookDelivery
from tests.support import job_count

PUBLIC = "93.184.215.14"
NAMES = {"hooks.example.com": [PUBLIC], "sneaky.example.com": ["10.9.8.7"]}


@pytest.fixture(autouse=True)
def names(app: Flask) -> list[str]:
    """The host names the API looks up, in order; only NAMES resolve."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in NAMES:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return NAMES[host]

    app.extensions["ladder"].resolve = resolve
    return asked


def submit(client: FlaskClient, headers: dict[str, str], url: Any, **more: Any) -> Any:
    body = {"kind": "stairs", "params": {"n": 5}, "callback_url": url, **more}
    return client.post("/api/v1/jobs", json=body, headers=headers)


def test_a_public_callback_is_kept_and_shown_pending(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    r = submit(client, user, "https://hooks.example.com/ladder?team=7")
    assert r.status_code == 202, r.get_json()
    job = r.get_json()
    assert job["webhook"] == {
        "url": "https://hooks.example.com/ladder?team=7",
        "state": "pending",
        "attempts": [],
        "next_attempt_at": None,
    }
    assert (
        client.get(f"/api/v1/jobs/{job['id']}", headers=user).get_json()["webhook"]
        == (job["webhook"])
    )
    with db.session() as session:
        assert session.scalar(select(Job.callback_url)) == "https://hooks.example.com/ladder?team=7"


def test_a_job_without_one_has_no_webhook(client: FlaskClient, user: dict[str, str]) -> None:
    r = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 5}}, headers=user)
    assert r.get_json()["webhook"] is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/hook", "is a loopback address"),
        ("http://10.0.0.8/hook", "is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "is a cloud metadata address"),
        ("http://[::1]/hook", "is a loopback address"),
        ("http://[::ffff:10.0.0.1]/hook", "10.0.0.1"),
        ("https://sneaky.example.com/hook", "resolves to a non-public address"),
        ("https://nowhere.example.com/hook", "does not resolve: nowhere.example.com"),
        ("ftp://hooks.example.com/", "http:// or https://"),
        ("https://hooks.example.com/" + "x" * 2048, "at most 2048 characters"),
        ("", "at least 1 character"),
        (7, "valid string"),
    ],
)
def test_a_refused_callback_is_a_422_naming_it_and_makes_nothing(
    client: FlaskClient, user: dict[str, str], db: Database, url: Any, why: str
) -> None:
    r = submit(client, user, url)
    assert r.status_code == 422
    (error,) = r.get_json()["errors"]
    assert error["field"] == "callback_url" and why in error["message"], error
    assert job_count(db) == 0


def test_a_refused_name_does_not_reveal_what_it_resolves_to(
    client: FlaskClient, user: dict[str, str]
) -> None:
    """The client learns nothing of how names resolve inside Ladder's network."""
    r = submit(client, user, "https://sneaky.example.com/hook")
    assert r.status_code == 422
    (error,) = r.get_json()["errors"]
    assert error["message"] == "resolves to a non-public address"
    assert "10.9.8.7" not in r.get_data(as_text=True)
    assert "private" not in r.get_data(as_text=True)


def test_allow_private_lets_a_private_receiver_in_but_not_the_metadata_service(
    app: Flask, client: FlaskClient, user: dict[str, str]
) -> None:
    ladder = app.extensions["ladder"]
    ladder.settings = dataclasses.replace(ladder.settings, webhook_allow_private=True)
    assert submit(client, user, "http://127.0.0.1:8080/hook").status_code == 202
    assert submit(client, user, "https://sneaky.example.com/hook").status_code == 202
    assert submit(client, user, "http://169.254.169.254/").status_code == 422


def test_a_batch_names_the_job_whose_callback_is_refused_and_makes_nothing(
    client: FlaskClient, user: dict[str, str], db: Database, names: list[str]
) -> None:
    good = {"kind": "stairs", "params": {"n": 1}, "callback_url": "https://hooks.example.com/x"}
    bad = {**good, "callback_url": "http://[::1]/x"}
    r = client.post("/api/v1/jobs/batch", json={"jobs": [good] * 50 + [bad]}, headers=user)
    assert r.status_code == 422
    assert [e["field"] for e in r.get_json()["errors"]] == ["jobs[50].callback_url"]
    assert job_count(db) == 0
    assert names == ["hooks.example.com"]  # one lookup per host in a request
    r = client.post("/api/v1/jobs/batch", json={"jobs": [good] * 3}, headers=user)
    assert r.status_code == 202
    assert all(job["webhook"]["state"] == "pending" for job in r.get_json()["items"])


def test_a_batch_may_name_at_most_16_callback_hosts_and_none_is_resolved_past_that(
    client: FlaskClient,
    user: dict[str, str],
    db: Database,
    names: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i in range(20):
        monkeypatch.setitem(NAMES, f"h{i}.example.com", [PUBLIC])

    def job(url: str) -> dict[str, Any]:
        return {"kind": "stairs", "params": {"n": 1}, "callback_url": url}

    # 17 hosts, each named twice (another port, another case): too many, and none looked up.
    urls = [f"https://h{i}.example.com/x" for i in range(17)]
    urls += [f"https://H{i}.Example.com:8443/y" for i in range(17)]
    r = client.post("/api/v1/jobs/batch", json={"jobs": [job(u) for u in urls]}, headers=user)
    assert r.status_code == 422
    (error,) = r.get_json()["errors"]
    assert error["field"] == "jobs" and "names 17 hosts" in error["message"]
    assert "at most 16" in error["message"]
    assert names == [] and job_count(db) == 0
    # Addresses and malformed URLs name no host to resolve: they do not count.
    fine = [u for u in urls if not u.startswith("https://h16.")]
    fine = [u for u in fine if not u.startswith("https://H16.")]
    fine += ["https://93.184.215.15/z", "ftp://nothing.example/"]
    r = client.post("/api/v1/jobs/batch", json={"jobs": [job(u) for u in fine]}, headers=user)
    assert [e["field"] for e in r.get_json()["errors"]] == [f"jobs[{len(fine) - 1}].callback_url"]
    assert sorted(names) == sorted(f"h{i}.example.com" for i in range(16))  # once each
    r = client.post("/api/v1/jobs/batch", json={"jobs": [job(u) for u in fine[:-1]]}, headers=user)
    assert r.status_code == 202, r.get_json()


def test_a_cancel_by_the_api_makes_the_delivery(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    job = submit(client, user, "https://hooks.example.com/ladder").get_json()
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=user)
    assert r.status_code == 200
    assert r.get_json()["webhook"]["state"] == "pending"
    with db.session() as session:
        (delivery,) = session.scalars(select(WebhookDelivery))
    assert delivery.job_id == job["id"] and '"status":"cancelled"' in delivery.body


def test_the_webhook_shows_the_latest_deliverys_attempts(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    job = submit(client, user, "https://hooks.example.com/ladder").get_json()
    client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=user)
    attempt = {"at": "2026-01-02T03:04:05Z", "status": 500, "error": "HTTP 500",
               "duration_ms": 12.5}  # fmt: skip
    with db.session() as session:
        delivery = session.scalars(select(WebhookDelivery)).one()
        delivery.attempts = [attempt]
        delivery.state = "failed"
        delivery.next_attempt_at = None
    shown = client.get(f"/api/v1/jobs/{job['id']}", headers=user).get_json()["webhook"]
    assert shown == {"url": "https://hooks.example.com/ladder", "state": "failed",
                     "attempts": [attempt], "next_attempt_at": None}  # fmt: skip


def test_each_key_reads_its_own_secret_which_rotates_with_its_token(
    app: Flask, client: FlaskClient, db: Database
) -> None:
    runner = app.test_cli_runner()
    tokens = {}
    for name in ("svc", "other"):
        result = runner.invoke(args=["keys", "create", name])
        tokens[name] = result.stdout.strip().splitlines()[-1]

    def secret(name: str) -> str:
        r = client.get(
            "/api/v1/webhook-secret", headers={"Authorization": f"Bearer {tokens[name]}"}
        )
        assert r.status_code == 200
        body = r.get_json()
        assert body["header"] == webhooks.SIGNATURE_HEADER and body["scheme"] == "v1"
        return str(body["secret"])

    first = secret("svc")
    assert first.startswith("whsec_") and len(first) > 40
    assert secret("other") != first
    with db.session() as session:
        stored = session.scalar(select(ApiKey.webhook_secret).where(ApiKey.name == "svc"))
    assert stored == first
    result = runner.invoke(args=["keys", "rotate", "svc"])
    assert result.exit_code == 0 and "webhook secret is new" in result.stderr
    tokens["svc"] = result.stdout.strip().splitlines()[-1]
    assert secret("svc") not in (first, "")
    assert client.get("/api/v1/webhook-secret").status_code == 401


def test_a_key_the_previous_release_made_gets_its_secret_when_first_asked(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    """The release before webhooks, still running while this one rolls out, makes keys with no
    secret: the first to need one gives it one, and it stays."""
    with db.session() as session:
        session.execute(update(ApiKey).values(webhook_secret=None))
    first = client.get("/api/v1/webhook-secret", headers=user).get_json()["secret"]
    assert first.startswith("whsec_") and len(first) > 40
    assert client.get("/api/v1/webhook-secret", headers=user).get_json()["secret"] == first
    with db.session() as session:
        assert session.scalar(select(ApiKey.webhook_secret).where(ApiKey.name == "alice")) == first
