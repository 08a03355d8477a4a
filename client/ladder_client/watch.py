"""Waiting on a job with a progress bar: the job's event stream moves it (`status` and
`progress` events); where no stream can be had, the job's own `progress`, polled."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ladder_client.client import Client
from ladder_client.errors import LadderError
from ladder_client.models import Job

POLL_EVERY = 1.0
"""Seconds between looks at the job when its event stream is refused (429: too many open)."""


class Bar:
    """The bar, or nothing at all where stderr is not a terminal."""

    def __init__(self, job_id: str, console: Console) -> None:
        self.name = job_id[:8]
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task(self.name, total=1.0)
        self.status = "queued"

    def show(self, status: str | None = None, progress: Any = None) -> None:
        if status:
            self.status = status
        fields: dict[str, Any] = {"description": escape(f"{self.name} {self.status}")}
        if isinstance(progress, int | float):
            fields["completed"] = min(max(float(progress), 0.0), 1.0)
        self.progress.update(self.task, **fields)


def watch(client: Client, job_id: str, timeout: float | None, console: Console) -> Job:
    """The job once it has ended, or as it is when `timeout` runs out; a bar meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = Bar(job_id, console)
    with bar.progress:
        try:
            for event in client.events(job_id, timeout=timeout):
                data = event.data if isinstance(event.data, dict) else {}
                if event.event == "status":
                    bar.show(data.get("status"), data.get("progress"))
                elif event.event == "progress":
                    bar.show(progress=data.get("progress"))
                elif event.ends_stream:
                    break
        except LadderError as error:
            if error.status != 429:
                raise
            _poll(client, job_id, deadline, bar)
    return client.get(job_id)


def _poll(client: Client, job_id: str, deadline: float | None, bar: Bar) -> None:
    while True:
        job = client.get(job_id)
        bar.show(job.status, job.progress)
        if job.finished or (deadline is not None and time.monotonic() >= deadline):
            return
        time.sleep(POLL_EVERY)
