"""schemathesis against /openapi.json: generated requests over every operation, without a
token and with a user's or an admin's, never get a 5xx and always get an answer the spec
describes."""

from __future__ import annotations

import dataclasses
from collections import Counter

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings

from api.auth import create_key
from tests.support import ADMIN_TOKEN

EXAMPLES = 50
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # the settings fixture's admin
# Whether a schema-valid job is accepted also depends on what no schema says: limits that span
# fields (n's cap depends on the steps), a GPU worker online, a model folder present. And JSON
# Schema counts 5.0 as an integer, which Ladder's strict parsing refuses.
LIVE = [schemathesis.checks.positive_data_acceptance]


def test_generated_requests_get_answers_the_spec_allows(app: Flask) -> None:
    ladder = app.extensions["ladder"]
    # Hundreds of bad tokens from one address would meet the failed-authentication limit,
    # and schemathesis wants 401 for each (tests/unit/api/test_security.py tests the limit).
    ladder.settings = dataclasses.replace(ladder.settings, auth_failures_per_minute=0)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    token = create_key(app.extensions["ladder"].db, "fuzz")
    sent: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            for headers in ({}, {"Authorization": f"Bearer {token}"}, ADMIN):
                reply = case.call_and_validate(app=app, headers=headers, excluded_checks=LIVE)
                sent[(case.operation.label, reply.status_code)] += 1

        call()
    assert sum(sent.values()) >= 1500
    assert {label for label, _ in sent} == {op.label for op in operations}
    assert sent[("POST /api/v1/jobs", 202)] > 0  # some generated jobs were real ones
    assert all(status < 500 for _, status in sent)
