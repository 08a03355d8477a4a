"""/openapi.json is a valid OpenAPI 3.1 document that describes every route the app serves."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate


def spec_of(client: FlaskClient) -> dict[str, Any]:
    spec: dict[str, Any] = client.get("/openapi.json").get_json()
    return spec


def test_the_spec_is_valid_openapi(client: FlaskClient) -> None:
    validate(spec_of(client))


def test_every_route_is_described_and_nothing_else(app: Flask, client: FlaskClient) -> None:
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("admin."):
            continue  # the dashboard is HTML for people, not part of the HTTP API
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
    described = {(p, m) for p, ops in spec_of(client)["paths"].items() for m in ops}
    assert served == described


def check(spec: dict[str, Any], schema_name: str, instance: Any) -> None:
    """Validate a real response body against a component schema of the spec."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)


def test_responses_match_their_schemas(client: FlaskClient, user: dict[str, str]) -> None:
    spec = spec_of(client)
    r = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": 4}}, headers=user)
    check(spec, "Job", r.get_json())
    check(spec, "JobList", client.get("/api/v1/jobs", headers=user).get_json())
    check(spec, "KindList", client.get("/api/v1/kinds").get_json())
    bad = client.post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": -1}}, headers=user)
    check(spec, "Problem", bad.get_json())
    check(spec, "SubmitRequest", {"kind": "stairs", "params": {"n": 4}, "priority": 9})
    for status in spec["paths"]["/api/v1/jobs"]["post"]["responses"]:
        assert status in {"202", "400", "401", "409", "413", "415", "422", "429", "503"}


def test_kind_params_schemas_in_the_spec_refuse_what_the_api_refuses(client: FlaskClient) -> None:
    spec = spec_of(client)
    check(spec, "StairsParams", {"n": 3, "steps": [1, 2], "modulus": 7})
    for bad in ({"n": -1}, {"n": 1.5}, {"n": 3, "steps": []}, {"n": 3, "steps": [1, 1]}, {}):
        try:
            check(spec, "StairsParams", bad)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"the spec accepts {bad}")
