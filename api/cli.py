"""`flask --app api keys ...`: manage API keys from the server's shell."""

from __future__ import annotations

import click
from flask import Blueprint

from api.auth import create_key
from api.context import ladder

bp = Blueprint("keys", __name__, cli_group="keys")


@bp.cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May see every job and the admin routes.")
def create(name: str, admin: bool) -> None:
    """Create a key NAME and print its token; it is shown this once only."""
    token = create_key(ladder().db, name, admin=admin)
    click.echo(
        f"created {'admin ' if admin else ''}key {name!r}; its token (shown once):",
        err=True,
    )
    click.echo(token)
