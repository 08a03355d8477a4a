"""The HTTP API: `create_app(settings)` builds it; `flask --app api` and gunicorn call it."""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy.exc import DBAPIError

from api import admin, cli, health, jobs, monitoring, openai_compat, openapi, problems
from api.admin import session
from api.auth import ensure_key
from api.context import Ladder
from shared import kinds
from shared.config import Settings
from shared.db import Database
from shared.producer import Producer

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API. Without `settings` it reads the environment, once, here."""
    settings = settings or Settings.from_env()
    kinds.check_settings(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ladder"] = Ladder(settings, Database(settings.database_url), Producer(settings))
    problems.init_app(app)
    session.init_app(app, settings)
    for blueprint in (
        jobs.bp,
        monitoring.bp,
        openai_compat.bp,
        health.bp,
        openapi.bp,
        cli.bp,
        admin.bp,
    ):
        app.register_blueprint(blueprint)
    if settings.admin_token:
        try:
            ensure_key(app.extensions["ladder"].db, "admin", settings.admin_token, admin=True)
        except DBAPIError as exc:
            log.warning("could not seed the admin key (run `make migrate`?): %s", exc)
    return app
