"""`GET /api/v1/info` and the dashboard show the retention policy in force and the caller's own
limits; a purged job is 404."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import fakeredis
import jsonschema
from flask.testing import FlaskClient

from api import create_app
from shared.config import DAY, Settings
from shared.db import Database
from shared.models import utcnow
from shared.retention import purge
from tests.support import add_job


def test_info_needs_a_key(client: FlaskClient) -> None:
    assert client.get("/api/v1/info").status_code == 401


def test_info_shows_the_default_policy_and_a_keys_limits(
    client: FlaskClient, user: dict[str, str], admin: dict[str, str]
) -> None:
    body = client.get("/api/v1/info", headers=user).get_json()
    assert body["retention"] == {
        "succeeded": {"seconds": 7 * DAY, "duration": "7d"},
        "failed": {"seconds": 30 * DAY, "duration": "30d"},
        "cancelled": {"seconds": 7 * DAY, "duration": "7d"},
    }
    assert body["purge_every_s"] == 60
    assert body["limits"] == {
        "max_active_jobs": 1_000,
        "max_priority": 5,
        "max_inline_result_bytes": 256 * 1024,
        "max_body_bytes": 1_048_576,
        "max_batch": 1_000,
        "rate_limit_per_minute": 6_000,
    }
    # An admin key has no priority ceiling but the scale's own top.
    assert client.get("/api/v1/info", headers=admin).get_json()["limits"]["max_priority"] == 9


def test_info_follows_the_settings_and_fits_the_spec(
    settings: Settings, admin: dict[str, str]
) -> None:
    changed = dataclasses.replace(
        settings,
        retention={"succeeded": 12 * 3_600, "failed": 90, "cancelled": 0},
        purge_every=300,
        max_active_jobs_per_key=7,
    )
    app = create_app(changed)
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    client = app.test_client()
    body = client.get("/api/v1/info", headers=admin).get_json()
    assert body["retention"]["succeeded"] == {"seconds": 43_200, "duration": "12h"}
    assert body["retention"]["failed"] == {"seconds": 90, "duration": "90s"}
    assert body["retention"]["cancelled"] == {"seconds": 0, "duration": "forever"}
    assert (body["purge_every_s"], body["limits"]["max_active_jobs"]) == (300, 7)
    spec = client.get("/openapi.json").get_json()
    schema = {"$ref": "#/components/schemas/Info", "components": spec["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
    app.extensions["ladder"].db.engine.dispose()


def test_the_dashboard_overview_shows_the_policy(settings: Settings, admin: dict[str, str]) -> None:
    changed = dataclasses.replace(settings, retention={"succeeded": 3_600, "failed": 2 * DAY,
                                                       "cancelled": 0})  # fmt: skip
    app = create_app(changed)
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    # A bearer token opens the dashboard's pages as a signed-in session does.
    page = app.test_client().get("/admin/", headers=admin)
    assert page.status_code == 200
    table = page.text[page.text.index('<table id="retention">') :]
    table = re.sub(r"\s+", " ", table[: table.index("</table>")])
    assert "succeeded</td><td>1h</td>" in table
    assert "failed</td><td>2d</td>" in table
    assert "cancelled</td><td>forever</td>" in table
    assert "purged every 60 s" in page.text
    app.extensions["ladder"].db.engine.dispose()


def test_a_purged_job_is_404(
    client: FlaskClient, admin: dict[str, str], db: Database, settings: Settings
) -> None:
    job_id = add_job(db, status="succeeded", finished_at=utcnow() - timedelta(days=8))
    assert client.get(f"/api/v1/jobs/{job_id}", headers=admin).status_code == 200
    purge(db, fakeredis.FakeRedis(), settings, utcnow())
    gone = client.get(f"/api/v1/jobs/{job_id}", headers=admin)
    assert gone.status_code == 404
    assert gone.headers["Content-Type"] == "application/problem+json"
