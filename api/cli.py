"""`flask --app api keys ...`: manage API keys from the server's shell.

Messages go to stderr; a token, when one is made, goes alone to stdout, on its last line.
"""

from __future__ import annotations

import click
from flask import Blueprint
from sqlalchemy.exc import IntegrityError

from api import keys
from api.auth import RecentKeys, create_key
from api.context import ladder
from shared.models import ApiKey
from shared.producer import HIGHEST, LOWEST

bp = Blueprint("keys", __name__, cli_group="keys")
bp.cli.help = (
    "Create, list, revoke and rotate API keys. A revoked or rotated-away token stops working "
    f"within {RecentKeys.KEEP_SECONDS:.0f} s in every API process."
)

LATENCY = f"within {RecentKeys.KEEP_SECONDS:.0f} s"


@bp.cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May see every job and the admin routes.")
@click.option(
    "--max-active",
    type=click.IntRange(min=1),
    help="Queued and running jobs this key may have (default: LADDER_MAX_ACTIVE_JOBS_PER_KEY).",
)
@click.option(
    "--max-priority",
    type=click.IntRange(LOWEST, HIGHEST),
    help="The highest priority this key may ask for (default: LADDER_MAX_PRIORITY; admin keys "
    "have no ceiling unless given one).",
)
def create(name: str, admin: bool, max_active: int | None, max_priority: int | None) -> None:
    """Create a key NAME and print its token; it is shown this once only."""
    db = ladder().db
    if keys.live_key(db, name) is not None:
        raise click.ClickException(f"a live key is named {name!r} already: pick another name")
    try:
        token = create_key(
            db, name, admin=admin, max_active_jobs=max_active, max_priority=max_priority
        )
    except IntegrityError:
        # Made by someone else between the check above and this insert.
        raise click.ClickException(f"a live key is named {name!r} already") from None
    click.echo(
        f"created {'admin ' if admin else ''}key {name!r}; its token (shown once):", err=True
    )
    click.echo(token)


@bp.cli.command("list")
def list_keys() -> None:
    """List every key, live ones first. Tokens are never shown: only their hashes are stored."""
    rows = [["name", "admin", "created", "last used", "limits", "revoked"]]
    rows += [_row(key) for key in keys.all_keys(ladder().db)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@bp.cli.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the live key NAME. Its token gets 401 within 5 s in every API process, and its
    dashboard sessions end at once."""
    db = ladder().db
    key = keys.live_key(db, name)
    if key is None or not keys.revoke(db, key.id):
        raise click.ClickException(f"no live key named {name!r}")
    click.echo(f"revoked key {name!r}: its token is refused {LATENCY}", err=True)
    if key.seeded:
        click.echo(
            "it was seeded from LADDER_ADMIN_TOKEN: set a new token there and restart the API "
            "for a new admin key",
            err=True,
        )


@bp.cli.command("rotate")
@click.argument("name")
def rotate(name: str) -> None:
    """Give the live key NAME a new token and print it; the old token gets 401 within 5 s.
    The key keeps its name, limits and jobs; its webhook secret is made anew."""
    try:
        token = keys.rotate(ladder().db, name)
    except keys.KeyRefused as refused:
        raise click.ClickException(str(refused)) from None
    click.echo(f"rotated key {name!r}; the old token is refused {LATENCY}, and the key's "
               "webhook secret is new too (GET /api/v1/webhook-secret); the new token "
               "(shown once):", err=True)  # fmt: skip
    click.echo(token)


def _row(key: ApiKey) -> list[str]:
    return [
        key.name,
        keys.admin(key),
        keys.when(key.created_at),
        keys.when(key.last_used_at),
        keys.limits(key),
        keys.when(key.revoked_at) if key.revoked_at else "-",
    ]
