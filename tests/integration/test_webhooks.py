"""Webhooks through the real stack, on SQLite and PostgreSQL: a job's end POSTed by a worker to a
receiver on 127.0.0.1 (the stack allows private targets and retries after 1 s), signed with the
key's secret; a receiver's error retried and every attempt shown on the job; no redirect
followed; and, on an API that allows no private targets, hostile URLs refused at submit."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from shared import webhooks
from shared.db import Database
from tests.processes import Stack, served_app
from tests.support import (
    ADMIN_TOKEN,
    LONG,
    Client,
    Receiver,
    check_webhooks_migration_round_trip,
    job_count,
    wait_for,
)


def secret(stack: Stack) -> str:
    reply = stack.client.call("GET", "/api/v1/webhook-secret")
    assert reply.status == 200
    return str(reply.json()["secret"])


def webhook_when(stack: Stack, job_id: str, state: str, attempts: int = 1) -> dict[str, Any]:
    """The job's webhook once it is in `state` with at least `attempts` attempts."""
    seen: dict[str, Any] = {}

    def there() -> bool:
        seen.update(stack.client.job(job_id)["webhook"])
        return seen["state"] == state and len(seen["attempts"]) >= attempts

    wait_for(there, f"webhook {state} after {attempts} attempts", 60)
    return seen


def test_a_jobs_end_is_posted_signed_with_its_brief(stack: Stack) -> None:
    with Receiver() as receiver:
        job = stack.client.submit({"n": 10}, callback_url=receiver.url("/in?team=7"))
        assert job["webhook"]["state"] == "pending"
        wait_for(lambda: len(receiver.got) == 1, "the webhook", 60)
        (got,) = receiver.got
        shown = webhook_when(stack, job["id"], "delivered")
    assert got.path == "/in?team=7"
    assert got.headers["Content-Type"] == "application/json"
    signature, delivery = got.headers["Ladder-Signature"], got.headers["Ladder-Delivery"]
    assert webhooks.verify(secret(stack), signature, delivery, got.body)
    assert not webhooks.verify("whsec_another", signature, delivery, got.body)
    assert not webhooks.verify(secret(stack), signature, str(int(delivery) + 1), got.body)
    body = json.loads(got.body)
    listed = stack.client.call("GET", "/api/v1/jobs?limit=50").json()["items"]
    assert body == next(item for item in listed if item["id"] == job["id"])
    assert body["status"] == "succeeded" and body["summary"] == "89"
    (attempt,) = shown["attempts"]
    assert attempt["status"] == 200 and attempt["error"] is None
    assert shown["next_attempt_at"] is None


def test_a_receiver_error_is_retried_and_each_attempt_recorded(stack: Stack) -> None:
    with Receiver([(500, {}), (503, {}), (200, {})]) as receiver:
        job = stack.client.submit({"n": 12}, callback_url=receiver.url())
        shown = webhook_when(stack, job["id"], "delivered", 3)
        got = list(receiver.got)
    assert [a["status"] for a in shown["attempts"]] == [500, 503, 200]
    assert [a["error"] for a in shown["attempts"]] == ["HTTP 500", "HTTP 503", None]
    # One delivery: the same body and id each time, each attempt signed afresh.
    assert len(got) == 3 and len({g.body for g in got}) == 1
    assert len({g.headers["Ladder-Delivery"] for g in got}) == 1
    key = secret(stack)
    assert all(
        webhooks.verify(key, g.headers["Ladder-Signature"], g.headers["Ladder-Delivery"], g.body)
        for g in got
    )
    times = [a["at"] for a in shown["attempts"]]
    assert times == sorted(times)


def test_a_cancel_through_the_api_is_delivered(stack: Stack) -> None:
    with Receiver() as receiver:
        job = stack.client.submit(LONG, callback_url=receiver.url())
        assert stack.client.call("POST", f"/api/v1/jobs/{job['id']}/cancel").status == 200
        wait_for(lambda: len(receiver.got) == 1, "the webhook", 60)
        webhook_when(stack, job["id"], "delivered")
    body = json.loads(receiver.got[0].body)
    assert body["id"] == job["id"] and body["status"] == "cancelled"
    assert body["error"]["code"] == "cancelled"


def test_a_redirect_is_not_followed(stack: Stack) -> None:
    with Receiver() as receiver:
        receiver.answers = [(302, {"Location": receiver.url("/elsewhere")}), (200, {})]
        job = stack.client.submit({"n": 3}, callback_url=receiver.url("/hook"))
        shown = webhook_when(stack, job["id"], "delivered", 2)
        paths = [g.path for g in receiver.got]
    first, second = shown["attempts"]
    assert (first["status"], first["error"]) == (302, "HTTP 302 (redirects are not followed)")
    assert second["status"] == 200
    assert paths == ["/hook", "/hook"]  # tried again where it was told, never at /elsewhere


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::1]:8080/hook",
        "http://localhost/hook",
    ],
)
def test_hostile_targets_are_refused_at_submit_when_private_ones_are_not_allowed(
    stack: Stack, url: str
) -> None:
    guarded = dataclasses.replace(stack.settings, webhook_allow_private=False)
    db = Database(stack.settings.database_url)
    try:
        before = job_count(db)
        with served_app(guarded) as base:
            client = Client(base, ADMIN_TOKEN)
            single = {"kind": "stairs", "params": {"n": 1}, "callback_url": url}
            reply = client.call("POST", "/api/v1/jobs", single)
            assert reply.status == 422, reply.body
            (error,) = reply.json()["errors"]
            message = error["message"]
            assert error["field"] == "callback_url"
            if "localhost" in url:  # a name: what it resolves to is not told
                assert message == "resolves to a non-public address"
            else:
                assert "LADDER_WEBHOOK_ALLOW_PRIVATE" in message or "metadata" in message
            plain = {"kind": "stairs", "params": {"n": 1}}
            reply = client.call("POST", "/api/v1/jobs/batch", {"jobs": [plain, single]})
            assert reply.status == 422
            assert [e["field"] for e in reply.json()["errors"]] == ["jobs[1].callback_url"]
        assert job_count(db) == before
    finally:
        db.engine.dispose()


def test_the_webhooks_migration_keeps_every_row_on_postgresql(empty_postgres_url: str) -> None:
    check_webhooks_migration_round_trip(empty_postgres_url)
