"""The HTTP API: `create_app(settings)` builds it; `flask --app api` and gunicorn call it."""

from __future__ import annotations

import logging

import click
from flask import Flask
from sqlalchemy.exc import DBAPIError

from api import (
    admin,
    cli,
    health,
    info,
    jobs,
    monitoring,
    openai_compat,
    openapi,
    problems,
    security,
    webhooks,
)
from api.admin import session
from api.context import Ladder
from api.keys import seed_admin_key
from shared import kinds
from shared.config import Settings
from shared.db import Database
from shared.producer import Producer

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API. Without `settings` it reads the environment, once, here."""
    settings = settings or Settings.from_env()
    kinds.check_settings(settings)
    security.check_settings(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ladder"] = Ladder(settings, Database(settings.database_url), Producer(settings))
    problems.init_app(app)
    security.init_app(app, settings)
    session.init_app(app, settings)
    for blueprint in (
        jobs.bp,
        info.bp,
        monitoring.bp,
        openai_compat.bp,
        health.bp,
        openapi.bp,
        cli.bp,
        admin.bp,
        webhooks.bp,
    ):
        app.register_blueprint(blueprint)
    # Not for `flask --app api keys …`: a shell with another LADDER_ADMIN_TOKEN would revoke
    # the serving API's admin key and seed one that no server knows.
    if settings.admin_token and click.get_current_context(silent=True) is None:
        try:
            seed_admin_key(app.extensions["ladder"].db, settings.admin_token)
        except DBAPIError as exc:
            log.warning("could not seed the admin key (run `make migrate`?): %s", exc)
    return app
