"""/openapi.json is valid OpenAPI 3.1, lists exactly the routes the app serves, and its limits
are the ones the server enforces."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from shared.config import Settings

UNDOCUMENTED = {"static", "admin"}
"""The app's static files and the `admin` blueprint are left out of the document: the dashboard
serves HTML to people and JSON to its own scripts, under a session cookie rather than a token,
and is no part of the API contract. Every other route must be documented."""


def spec_of(client: FlaskClient) -> dict[str, Any]:
    spec: dict[str, Any] = client.get("/openapi.json").get_json()
    return spec


def served_operations(app: Flask) -> set[tuple[str, str]]:
    """(path, method) for each route the app answers, in OpenAPI's form: `<x>` → `{x}`."""
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.partition(".")[0] in UNDOCUMENTED:
            assert rule.rule.startswith(("/admin/", "/static/")), rule.rule
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
    return served


def test_the_spec_is_valid_openapi(client: FlaskClient) -> None:
    validate(spec_of(client))


def test_every_route_is_described_and_nothing_else(app: Flask, client: FlaskClient) -> None:
    described = {(p, m) for p, ops in spec_of(client)["paths"].items() for m in ops}
    served = served_operations(app)
    assert served - described == set(), "served but not in /openapi.json"
    assert described - served == set(), "in /openapi.json but not served"


def test_a_new_route_fails_the_check(app: Flask, client: FlaskClient) -> None:
    app.add_url_rule("/api/v1/jobs/<job_id>/retry", "retry", lambda job_id: {}, methods=["POST"])
    described = {(p, m) for p, ops in spec_of(client)["paths"].items() for m in ops}
    assert served_operations(app) - described == {("/api/v1/jobs/{job_id}/retry", "post")}


def check(spec: dict[str, Any], schema_name: str, instance: Any) -> None:
    """Validate a real response body against a component schema of the spec."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)


def test_responses_match_their_schemas(
    client: FlaskClient, user: dict[str, str], admin: dict[str, str]
) -> None:
    spec = spec_of(client)
    r = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 4}}, headers=user)
    check(spec, "Job", r.get_json())
    check(spec, "JobList", client.get("/api/v1/jobs", headers=user).get_json())
    check(spec, "KindList", client.get("/api/v1/kinds").get_json())
    check(spec, "WorkerList", client.get("/api/v1/workers", headers=admin).get_json())
    check(spec, "Stats", client.get("/api/v1/stats", headers=admin).get_json())
    check(spec, "Health", client.get("/healthz").get_json())
    bad = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": -1}}, headers=user)
    check(spec, "Problem", bad.get_json())
    check(spec, "SubmitRequest", {"kind": "stairs", "params": {"n": 4}, "priority": 9})


def test_kind_params_schemas_in_the_spec_refuse_what_the_api_refuses(client: FlaskClient) -> None:
    spec = spec_of(client)
    check(spec, "StairsParams", {"n": 3, "steps": [1, 2], "modulus": 7})
    for bad in ({"n": -1}, {"n": 1.5}, {"n": 3, "steps": []}, {"n": 3, "steps": [1, 1]}, {}):
        with pytest.raises(jsonschema.ValidationError):
            check(spec, "StairsParams", bad)


def parameter(operation: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = next(p for p in operation["parameters"] if p["name"] == name)["schema"]
    return schema


def test_documented_limits_are_the_enforced_ones(
    client: FlaskClient, user: dict[str, str], admin: dict[str, str]
) -> None:
    """At each documented bound the server says yes, and one past it, no."""
    paths = spec_of(client)["paths"]
    submit = paths["/api/v1/jobs"]["post"]

    def post(headers: dict[str, str] | None = None, **body: Any) -> int:
        job = {"kind": "stairs", "params": {"n": 3}, **body}
        reply = client.post("/api/v1/jobs", json=job, headers={**user, **(headers or {})})
        return reply.status_code

    longest = parameter(submit, "Idempotency-Key")["maxLength"]
    assert post({"Idempotency-Key": "k" * longest}) == 202
    assert post({"Idempotency-Key": "k" * (longest + 1)}) == 422

    priority = spec_of(client)["components"]["schemas"]["SubmitRequest"]["properties"]["priority"]
    assert post(admin, priority=priority["maximum"]) == 202
    assert post(admin, priority=priority["maximum"] + 1) == 422
    ceiling = Settings().max_priority  # the default ceiling of a key that is not an admin's
    assert post(priority=ceiling) == 202
    assert post(priority=ceiling + 1) == 422
    assert post(priority=priority["minimum"] - 1) == 422

    limit = parameter(paths["/api/v1/jobs"]["get"], "limit")
    for _ in range(limit["default"]):
        assert post() == 202
    page = client.get("/api/v1/jobs", headers=user).get_json()
    assert len(page["items"]) == limit["default"]
    assert page["next_cursor"] is not None  # the probes above made jobs too
    low, high = limit["minimum"], limit["maximum"]
    for n, status in [(high, 200), (high + 1, 422), (low - 1, 422)]:
        assert client.get(f"/api/v1/jobs?limit={n}", headers=user).status_code == status
