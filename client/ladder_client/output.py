"""How the `ladder` command shows things: tables for a person at a terminal, JSON for a script
(`--json`, or whenever stdout is not a terminal)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.json import JSON
from rich.markup import escape
from rich.table import Table

from ladder_client.errors import LadderConnectionError, LadderError
from ladder_client.models import Job, Kind

STYLES = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def dump(value: Any, console: Console) -> None:
    """JSON a script can read: one document, nothing else on stdout."""
    console.file.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    console.file.flush()


def status(value: str) -> str:
    return f"[{STYLES.get(value, 'white')}]{value}[/]"


def show_job(job: Job, console: Console) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", job.id)
    table.add_row("kind", job.kind)
    table.add_row("status", status(job.status))
    if job.progress is not None and not job.finished:
        table.add_row("progress", f"{job.progress:.0%}")
    table.add_row("priority", str(job.priority))
    table.add_row("queue", f"{job.queue or '-'} (device {job.device or '-'})")
    table.add_row("worker", f"{job.worker or '-'}, attempt {job.attempts}")
    for name, when in [
        ("created", job.created_at),
        ("started", job.started_at),
        ("finished", job.finished_at),
    ]:
        if when is not None:
            table.add_row(name, _time(when))
    if job.error:
        code, message = job.error.get("code"), job.error.get("message")
        table.add_row("error", f"[red]{escape(str(code))}[/]: {escape(str(message))}")
    console.print(table)
    if job.result is not None:
        console.print(JSON(json.dumps(job.result, ensure_ascii=False)))


def show_jobs(jobs: Iterable[Job], console: Console) -> int:
    table = Table("id", "kind", "status", "created", "summary", header_style="bold")
    count = 0
    for job in jobs:
        summary = escape(job.summary or "")
        table.add_row(job.id, job.kind, status(job.status), _time(job.created_at), summary)
        count += 1
    console.print(table)
    return count


def show_kinds(kinds: list[Kind], console: Console) -> None:
    table = Table("kind", "pools", "summary", header_style="bold")
    for kind in kinds:
        table.add_row(kind.name, ", ".join(kind.pools), escape(kind.summary))
    console.print(table)


def show_mapping(data: dict[str, Any], console: Console) -> None:
    """Nested objects as dotted names, one value a row (`limits.max_batch  1000`)."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in _rows(data):
        table.add_row(name, escape(value))
    console.print(table)


def _rows(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for name, value in data.items():
        if isinstance(value, dict) and "duration" in value:  # a retention: "7d" says it all
            yield prefix + name, str(value["duration"])
        elif isinstance(value, dict):
            yield from _rows(value, f"{prefix}{name}.")
        else:
            yield prefix + name, value if isinstance(value, str) else json.dumps(value)


def show_error(error: LadderError, console: Console, token_set: bool) -> None:
    """An error on stderr: the problem's title, then each bad field, or its detail."""
    if isinstance(error, LadderConnectionError) or error.status is None:
        console.print(f"[red]error:[/] {error.detail}", highlight=False)
        return
    console.print(f"[red]error:[/] {error.status} {error.title}", highlight=False)
    if error.errors:
        for field in error.errors:
            console.print(f"  {field.field}: {field.message}", highlight=False, markup=False)
    else:
        console.print(f"  {error.detail}", highlight=False, markup=False)
    if error.status == 401 and not token_set:
        console.print("  (no token: pass --token, set LADDER_TOKEN, or write a config file)")


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
