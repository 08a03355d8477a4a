"""Reading a request body and query strings strictly: each failure is a clear 4xx."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from flask import request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from api.problems import Problem, invalid
from shared.kinds import FieldError
from shared.producer import HIGHEST, LOWEST
from shared.webhooks import MAX_URL

Priority = Annotated[
    StrictInt, Field(ge=LOWEST, le=HIGHEST, description=f"{LOWEST}-{HIGHEST}; higher runs first.")
]
"""A job's priority, as submitted and as shown: the one place its bounds are written."""
Device = Literal["auto", "cpu", "gpu"]
"""Where a job may run: `auto` takes the kind's first pool with a live worker."""


class SubmitRequest(BaseModel):
    """The body of `POST /api/v1/jobs`."""

    model_config = ConfigDict(extra="forbid", strict=True, title="SubmitRequest")

    kind: Annotated[StrictStr, Field(max_length=64, description="A kind from /api/v1/kinds.")]
    params: Annotated[dict[str, Any], Field(default_factory=dict, description="The kind's params.")]
    priority: Annotated[
        Priority,
        Field(
            default=5,
            description=f"{LOWEST}-{HIGHEST}; higher runs first. A key that is not an admin's "
            "may ask for up to LADDER_MAX_PRIORITY (5 by default) or its own ceiling; above it, "
            "422.",
        ),
    ]
    device: Annotated[
        Device, Field(default="auto", description="Where to run: the kind's first pool when auto.")
    ]
    callback_url: Annotated[
        StrictStr | None,
        Field(
            min_length=1,
            max_length=MAX_URL,
            description="An http(s) URL that gets the job's brief form, POSTed and signed "
            "(Ladder-Signature) when the job ends; retried with backoff for a day. Refused "
            "(422) when it is or resolves to a loopback, private, link-local, CGNAT, multicast "
            "or cloud metadata address, unless LADDER_WEBHOOK_ALLOW_PRIVATE (metadata never).",
        ),
    ] = None  # here, not in Field: mypy sees it is optional (openai_compat leaves it out)


M = TypeVar("M", bound=BaseModel)
MAX_BATCH = 1_000
"""The most jobs one `POST /api/v1/jobs/batch` may hold."""


class BatchRequest(BaseModel):
    """The body of `POST /api/v1/jobs/batch`: jobs validated together, made together."""

    model_config = ConfigDict(extra="forbid", strict=True, title="BatchRequest")

    jobs: Annotated[
        list[SubmitRequest],
        Field(min_length=1, max_length=MAX_BATCH, description="Each as for POST /api/v1/jobs."),
    ]


MAX_DEPTH = 32
"""The deepest a request body may nest; no job needs more than a handful of levels."""


def json_body() -> dict[str, Any]:
    """The request's JSON object: 415 when not JSON, 400 when malformed, 413 when too large."""
    if request.mimetype != "application/json":
        raise Problem(415, "send the body as application/json")
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        # ValueError also covers integers longer than Python's 4,300-digit limit.
        raise Problem(400, f"the body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise Problem(400, "the body must be a JSON object")
    _check_tree(body)
    return body


def _check_tree(body: dict[str, Any]) -> None:
    """Refuse nesting past MAX_DEPTH and strings that are not Unicode text (a lone surrogate
    from a `\\ud800` escape, which neither UTF-8 nor PostgreSQL can hold). No recursion."""
    level: list[tuple[Any, int]] = [(body, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise Problem(400, "the body holds a string with a lone surrogate") from None
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise Problem(400, f"the body nests arrays and objects over {MAX_DEPTH} deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            level.extend((child, depth + 1) for child in children)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_submit(body: dict[str, Any]) -> SubmitRequest:
    return _parse(SubmitRequest, body)


def parse_batch(body: dict[str, Any]) -> BatchRequest:
    return _parse(BatchRequest, body)


def _parse(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid([FieldError(_path(e["loc"]), e["msg"]) for e in exc.errors()]) from None


def _path(loc: tuple[int | str, ...]) -> str:
    """A field's dotted path, with list positions in brackets: `jobs[17].params`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path or "body"


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only, and few of them: "²" is a digit to str.isdigit, and int() refuses
    # strings of over 4,300 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or not low <= int(raw) <= high:
        raise invalid([FieldError(name, f"must be an integer from {low} to {high}")])
    return int(raw)
