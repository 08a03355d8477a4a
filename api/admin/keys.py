"""The dashboard's Keys page: every key, and revoking one in two steps, a confirm page and then
its form, which carries the session's CSRF token (checked by `admin_page`)."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api.admin.session import admin_page, current_admin
from api.admin.views import bp
from api.auth import Caller, RecentKeys, authenticate
from api.context import ladder
from api.keys import admin, all_keys, find, limits, revoke, when
from api.problems import Problem
from shared.models import ApiKey

LATENCY = f"within {RecentKeys.KEEP_SECONDS:.0f} s"


@bp.get("/keys")
@admin_page
def keys_page() -> str:
    notice = None
    if (revoked := _key(request.args.get("revoked", ""))) is not None:
        notice = f"Key {revoked.name!r} is revoked: every API process refuses it {LATENCY}."
    return _page(notice=notice)


@bp.route("/keys/<key_id>/revoke", methods=["GET", "POST"])
@admin_page
def revoke_key(key_id: str) -> str | BaseResponse | tuple[str, int]:
    key = _key(key_id)
    if key is None:
        raise Problem(404, f"no key {key_id}")
    refusal = _refusal(key, _caller())
    confirmed = request.method == "POST" and request.form.get("confirm") == "yes"
    if refusal or not confirmed:
        # The first step: a page that says what revoking does, with the form that does it.
        page = render_template("admin/key_revoke.html", key=_view(key), refusal=refusal,
                               latency=LATENCY)  # fmt: skip
        status = 200 if request.method == "GET" else 409 if refusal else 400
        return page, status
    if not revoke(ladder().db, key.id):
        return _page(error=f"Key {key.name!r} was revoked already."), 409
    return redirect(url_for("admin.keys_page", revoked=key.id))


def _refusal(key: ApiKey, caller: Caller) -> str | None:
    if key.revoked_at is not None:
        return f"Key {key.name!r} is revoked already."
    if key.id == caller.key_id:
        return (f"You are signed in with key {key.name!r}: sign in with another admin key to "
                "revoke it, or run `flask --app api keys revoke` on the server.")  # fmt: skip
    return None


def _page(notice: str | None = None, error: str | None = None) -> str:
    me = _caller().key_id
    return render_template("admin/keys.html", keys=[_view(k) for k in all_keys(ladder().db)],
                           me=me, notice=notice, error=error, latency=LATENCY)  # fmt: skip


def _view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "admin": admin(key),
        "created": when(key.created_at),
        "last_used": when(key.last_used_at),
        "limits": limits(key),
        "revoked": when(key.revoked_at) if key.revoked_at else None,
    }


def _caller() -> Caller:
    # A session, or a script's bearer token: admin_page has let only admins through.
    return current_admin() or authenticate(ladder().db)


def _key(key_id: str) -> ApiKey | None:
    # Any text may come in the URL; only a number that fits a BIGINT can name a key.
    wellformed = key_id.isascii() and key_id.isdecimal() and len(key_id) <= 18
    return find(ladder().db, int(key_id)) if wellformed else None
