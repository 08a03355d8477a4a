"""Problems the API answers become LadderError with their status, title and field errors."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from ladder_client import Client, FieldError, LadderConnectionError, LadderError
from ladder_client.errors import from_response

PROBLEM = "application/problem+json"


def test_a_problem_carries_its_status_title_detail_and_fields() -> None:
    body = {
        "type": "urn:ladder:problem:invalid-params",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "params.n: must be at least 0",
        "errors": [{"field": "params.n", "message": "must be at least 0"}],
    }
    error = from_response(httpx.Response(422, json=body, headers={"Content-Type": PROBLEM}))
    assert (error.status, error.title) == (422, "Unprocessable Entity")
    assert error.detail == "params.n: must be at least 0"
    assert error.errors == [FieldError("params.n", "must be at least 0")]
    assert error.problem["type"] == "urn:ladder:problem:invalid-params"
    assert str(error) == "422 Unprocessable Entity: params.n: must be at least 0"


def test_a_body_that_is_not_a_problem_still_gives_status_and_text() -> None:
    error = from_response(httpx.Response(502, text="Bad gateway from the proxy"))
    assert error.status == 502 and error.title == "Bad Gateway"
    assert error.detail == "Bad gateway from the proxy" and error.errors == []


def test_retry_after_is_read_in_seconds() -> None:
    error = from_response(
        httpx.Response(429, json={"title": "Too Many Requests"}, headers={"Retry-After": "7"})
    )
    assert error.retry_after == 7.0


def test_errors_reach_the_caller_unretried_when_they_are_the_request_s_fault(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            404, json={"title": "Not Found", "status": 404, "detail": "no job nope"}
        )

    with pytest.raises(LadderError) as caught:
        client_for(handler).get("nope")
    assert caught.value.status == 404 and caught.value.detail == "no job nope"
    assert len(calls) == 1 and sleeps == []


def test_no_answer_is_a_connection_error(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(LadderConnectionError) as caught:
        client_for(handler).get("j1")
    assert caught.value.status is None and "connection refused" in str(caught.value)
    assert len(sleeps) == 3  # a GET is tried again, up to `retries` times
