"""The API's doors: the secrets it refuses to start without, the proxies whose forwarded
headers it believes, and the same-origin check on the dashboard's sign-in form."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from api.problems import Problem
from shared.config import Settings

log = logging.getLogger(__name__)
MIN_SECRET_CHARS = 32
MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def check_settings(settings: Settings) -> None:
    """RuntimeError, saying how to make one, for a missing or short secret key or a short
    admin token: a guessable token opens every job, and a guessable key forges sessions."""
    if len(settings.secret_key or "") < MIN_SECRET_CHARS:
        raise RuntimeError(
            f"LADDER_SECRET_KEY must be set to at least {MIN_SECRET_CHARS} random characters "
            f"(it signs the dashboard's sessions); make one with: {MAKE_ONE}"
        )
    if settings.admin_token is not None and len(settings.admin_token) < MIN_SECRET_CHARS:
        short = f"LADDER_ADMIN_TOKEN is shorter than {MIN_SECRET_CHARS} characters"
        if settings.local_only:
            # `make run` on 127.0.0.1: nobody else can reach it to guess (a newcomer's `abc`).
            log.warning("%s; taken because this API listens on loopback only", short)
            return
        raise RuntimeError(f"{short}; make a long random one with: {MAKE_ONE}")


def init_app(app: Flask, settings: Settings) -> None:
    """Behind `LADDER_TRUSTED_PROXIES` proxies, take the client's address, scheme and host from
    their X-Forwarded-* headers (the failed-auth limit counts by address, and the session
    cookie is Secure over TLS); with none, those headers are anybody's and are ignored."""
    hops = settings.trusted_proxies
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )


def require_same_origin() -> None:
    """403 for a form posted from another site (login CSRF), told by the browser's
    Sec-Fetch-Site or Origin. A request with neither comes from no browser, which is no
    victim to protect: it goes through."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        # "none": the user's own navigation (a bookmark, the address bar).
        if site in {"same-origin", "none"}:
            return
        raise Problem(403, f"a {site} form may not sign in here; use the dashboard's own page")
    origin = request.headers.get("Origin")
    if origin is None:
        return
    sent = urlsplit(origin)
    if (sent.scheme, sent.netloc.lower()) != (request.scheme, request.host.lower()):
        raise Problem(403, "a form from another origin may not sign in here")
