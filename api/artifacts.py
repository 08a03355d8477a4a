"""Serving the files jobs make, to their owners over the API and to admins on the dashboard."""

from __future__ import annotations

from flask import Response

from api.context import ladder
from api.problems import Problem
from shared import jobs

SANDBOX = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src data: blob:"
)
"""An artifact is the job's content, not this server's page: opened in a browser (explorer.html
is one), it runs in an opaque origin that can read no cookie or page of ours and fetch nothing."""


def send(job_id: str, name: str, *, download: bool) -> Response:
    found = jobs.find_artifact(ladder().db, job_id, name)
    if found is None:
        raise Problem(404, f"job {job_id} has no artifact named {name!r}")
    headers = {"Content-Security-Policy": SANDBOX, "X-Content-Type-Options": "nosniff"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{found.name}"'
    return Response(found.data, mimetype=found.content_type, headers=headers)
