"""Signing in to the dashboard: an admin token exchanged for a session cookie, and CSRF.

No cookie is set before sign-in: a session signed for anyone who asks would let them test
guesses of the secret key offline. The sign-in form is guarded by a same-origin check instead
(api.security), and the session, with its CSRF token, begins when an admin signs in."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Request, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select

from api.auth import Caller, authenticate, hash_token
from api.context import ladder
from api.problems import Problem
from shared.config import Settings
from shared.models import ApiKey

F = TypeVar("F", bound=Callable[..., Any])


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure exactly when the request came over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        current: Request = request
        return bool(current.is_secure)


def init_app(app: Flask, settings: Settings) -> None:
    # Its own secret, shared by every API process (a session works whichever one answers),
    # and nothing to do with any token: a cookie must tell nothing about a key.
    app.secret_key = settings.secret_key
    app.session_interface = SessionInterface()
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_NAME="ladder_admin")  # fmt: skip


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    token: str = session["csrf"]
    return token


def check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        raise Problem(403, "the form's CSRF token is missing or wrong; reload the page")


def sign_in(token: str) -> Caller | None:
    """The admin behind a token, or None (unknown, revoked, or not an admin)."""
    with ladder().db.session() as s:
        key = s.scalars(select(ApiKey).where(ApiKey.token_hash == hash_token(token))).first()
    if key is None or key.revoked_at is not None:
        return None
    caller = Caller.of(key)
    if caller.is_admin:
        session.clear()
        session["key_id"] = key.id
        session["credential"] = _credential(key)
        csrf_token()
    return caller


def current_admin() -> Caller | None:
    """The signed-in admin; None once the key is revoked, no longer an admin's, or rotated
    (a session begun with a leaked token must end when the token is replaced)."""
    key_id = session.get("key_id")
    if key_id is None:
        return None
    with ladder().db.session() as s:
        key = s.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or not key.is_admin:
        session.clear()
        return None
    if not hmac.compare_digest(session.get("credential", ""), _credential(key)):
        session.clear()
        return None
    return Caller.of(key)


def _credential(key: ApiKey) -> str:
    """Which token of the key the session began with: a hash of its hash, so that the cookie
    tells nothing that the database does not keep to itself."""
    return hashlib.sha256(b"ladder-session:" + key.token_hash.encode()).hexdigest()[:32]


def admin_page(view: F) -> F:
    """Pages: sign in first. JSON and forms: 401 without a session."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "Authorization" in request.headers:
            # A bearer token instead of a session (scripts): admins only, and no CSRF to check.
            if not authenticate(ladder().db).is_admin:
                raise Problem(403, "the dashboard is for admin keys")
            return view(*args, **kwargs)
        if current_admin() is None:
            if request.method == "GET" and "/api/" not in request.path:
                return redirect(url_for("admin.login", next=request.path))
            raise Problem(401, "sign in to the dashboard first")
        if request.method == "POST":
            check_csrf()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
