"""POST /api/v1/jobs/batch: every job validated before any is made, then all made together."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared import producer
from shared.db import Database
from tests.support import job_count

URL = "/api/v1/jobs/batch"


def stairs(n: int) -> dict[str, Any]:
    return {"kind": "stairs", "params": {"n": n}}


def test_a_batch_is_made_in_order_and_each_job_is_queued(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    r = client.post(URL, json={"jobs": [stairs(n) for n in range(5)]}, headers=user)
    assert r.status_code == 202
    items = r.get_json()["items"]
    assert [job["params"]["n"] for job in items] == [0, 1, 2, 3, 4]
    assert all(job["status"] == "queued" and job["queue"] == "cpu" for job in items)
    assert len({job["id"] for job in items}) == 5 and job_count(db) == 5
    for job in items:  # each one is a job like any other
        assert client.get(f"/api/v1/jobs/{job['id']}", headers=user).get_json() == job


def test_one_bad_job_is_named_and_nothing_is_made(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    jobs = [stairs(n) for n in range(20)]
    jobs[17] = stairs(-1)
    jobs[3] = {"kind": "nope", "params": {}}
    r = client.post(URL, json={"jobs": jobs}, headers=user)
    assert r.status_code == 422
    fields = [e["field"] for e in r.get_json()["errors"]]
    assert fields == ["jobs[3].kind", "jobs[17].params.n"]
    assert job_count(db) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jobs": []}, "jobs"),
        ({"jobs": [stairs(1)] * 1001}, "jobs"),
        ({"jobs": stairs(1)}, "jobs"),
        ({}, "jobs"),
        ({"jobs": [stairs(1)], "more": 1}, "more"),
        ({"jobs": [stairs(1), {"kind": "stairs", "params": {"n": 1}, "priority": 10}]},
         "jobs[1].priority"),
        ({"jobs": [stairs(1), 7]}, "jobs[1]"),
    ],
)  # fmt: skip
def test_a_malformed_batch_is_a_422_naming_the_field(
    client: FlaskClient, user: dict[str, str], db: Database, body: Any, field: str
) -> None:
    r = client.post(URL, json=body, headers=user)
    assert r.status_code == 422, r.get_json()
    assert field in [e["field"] for e in r.get_json()["errors"]]
    assert job_count(db) == 0


def test_the_limit_is_named(client: FlaskClient, user: dict[str, str]) -> None:
    r = client.post(URL, json={"jobs": [stairs(1)] * 1001}, headers=user)
    assert "1000" in r.get_json()["detail"]


def test_an_idempotency_key_stands_for_the_whole_batch(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    body = {"jobs": [stairs(n) for n in range(3)]}
    key = {**user, "Idempotency-Key": "nightly-2026-12-01"}
    first = client.post(URL, json=body, headers=key)
    again = client.post(URL, json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert [j["id"] for j in again.get_json()["items"]] == [
        j["id"] for j in first.get_json()["items"]
    ]
    assert job_count(db) == 3
    other = client.post(URL, json={"jobs": [stairs(9)]}, headers=key)
    assert other.status_code == 409
    # The same key on a single submit is another body too.
    single = client.post("/api/v1/jobs", json=stairs(0), headers=key)
    assert single.status_code == 409 and job_count(db) == 3


def test_a_broker_that_refuses_the_batch_leaves_nothing_behind(
    app: Flask, client: FlaskClient, user: dict[str, str], db: Database, monkeypatch: Any
) -> None:
    def refuse(*_: Any) -> None:
        raise producer.BrokerUnavailable("down")

    monkeypatch.setattr(app.extensions["ladder"].producer, "send_many", refuse)
    r = client.post(URL, json={"jobs": [stairs(1), stairs(2)]}, headers=user)
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert job_count(db) == 0


def test_a_batch_needs_a_key(client: FlaskClient) -> None:
    assert client.post(URL, json={"jobs": [stairs(1)]}).status_code == 401
