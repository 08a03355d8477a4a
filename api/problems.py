"""Errors as RFC 9457 problem+json, for every failure the API can meet; never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, has_request_context, json, request
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from werkzeug.exceptions import HTTPException

from shared.kinds import FieldError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Iterable[FieldError] = (),
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.type = type_
        self.headers = headers or {}


def invalid(errors: list[FieldError]) -> Problem:
    """422: the request was well-formed JSON but its fields break the contract."""
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return Problem(422, detail, errors=errors, type_="urn:ladder:problem:invalid-params")


def unavailable(what: str) -> Problem:
    return Problem(
        503,
        f"the {what} is unavailable; try again shortly",
        headers={"Retry-After": "5"},
    )


def _unavailable_handler(what: str) -> Callable[[Exception], Response]:
    def handle(exc: Exception) -> Response:
        log.warning("%s unavailable: %s: %s", what, type(exc).__name__, exc)
        return problem_response(unavailable(what))

    return handle


def problem_response(problem: Problem) -> Response:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in problem.errors]
    if has_request_context() and request.path.startswith("/v1/"):
        # OpenAI's clients read the message from an `error` member: the same problem, for them.
        body["error"] = {
            "message": problem.detail,
            "type": "invalid_request_error" if problem.status < 500 else "server_error",
            "param": problem.errors[0].field if problem.errors else None,
            "code": None,
        }
    response = Response(json.dumps(body), status=problem.status, mimetype=PROBLEM_JSON)
    response.headers.update(problem.headers)
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(Problem, problem_response)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        detail = exc.description or HTTPStatus(status).description
        headers = {k: v for k, v in exc.get_headers() if k.lower() in {"allow", "www-authenticate"}}
        return problem_response(Problem(status, detail, headers=headers))

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError) -> Response:
        # A value the database refuses (a NUL byte in PostgreSQL text, say): the request's
        # fault, not an outage, so no Retry-After.
        log.warning("database refused a value: %s", exc)
        return problem_response(Problem(400, "a value in the request cannot be stored"))

    # A database or broker that is away, or a pool with every connection taken, is an outage
    # of the moment, not the request's fault: 503 with Retry-After.
    for error, what in [
        (DBAPIError, "database"),
        (SQLAlchemyTimeout, "database"),
        (RedisError, "broker"),
        (BrokerError, "broker"),
    ]:
        app.register_error_handler(error, _unavailable_handler(what))

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(Problem(500, "an internal error occurred; it has been logged"))
