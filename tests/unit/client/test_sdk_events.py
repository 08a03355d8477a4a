"""Server-sent events: parsed a line at a time, resumed after a dropped connection with
Last-Event-ID so that no event is lost or repeated, and the server's `reconnect` followed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ladder_client import Client, Event, LadderConnectionError, LadderError
from ladder_client.sse import Decoder


def sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def token(n: int) -> bytes:
    return sse("token", {"text": f"t{n}", "n": n}, f"1-{n}")


class Chunks(httpx.SyncByteStream):
    """A response body sent in pieces, which may break off as a dropped connection does."""

    def __init__(self, parts: list[bytes], drop: bool = False) -> None:
        self.parts, self.drop = parts, drop

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts
        if self.drop:
            raise httpx.ReadError("connection reset by peer")


def stream(parts: list[bytes], drop: bool = False) -> httpx.Response:
    return httpx.Response(
        200, headers={"Content-Type": "text/event-stream"}, stream=Chunks(parts, drop)
    )


STATUS = sse("status", {"id": "j1", "status": "running"})


def test_the_decoder_reads_fields_comments_and_many_data_lines() -> None:
    decoder = Decoder()
    lines = [
        ": keep-alive",
        "",
        "id: 7",
        "event: token",
        'data: {"text":',
        'data: "a"}',
        "",
        "data: plain",
        "",
    ]
    events = [e for e in map(decoder.feed, lines) if e is not None]
    assert events == [Event("token", {"text": "a"}, "7"), Event("message", "plain", None)]


def test_a_dropped_connection_resumes_after_the_last_event_seen(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Last-Event-ID"))
        if len(seen) == 1:  # cut in the middle of the fourth token
            return stream([STATUS, token(1) + token(2), token(3), b"id: 1-4\nevent: tok"], True)
        # A generation's own `end` entry (it has an id) is passed on; the stream's ends it.
        finish = sse("end", {"finish_reason": "length"}, "1-6")
        return stream([STATUS, token(4), token(5), finish, sse("end", {"status": "succeeded"})])

    events = list(client_for(handler).events("j1"))
    assert seen == [None, "1-3"]
    texts = [e.data["text"] for e in events if e.event == "token"]
    assert texts == ["t1", "t2", "t3", "t4", "t5"]
    assert events[-2:] == [
        Event("end", {"finish_reason": "length"}, "1-6"),
        Event("end", {"status": "succeeded"}),
    ]
    assert len(sleeps) == 1


def test_the_server_s_reconnect_is_followed_at_once_and_not_passed_on(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Last-Event-ID"))
        if len(seen) == 1:
            reconnect = sse("reconnect", {"reason": "longest life", "last_event_id": "1-1"})
            return stream([STATUS, token(1), reconnect])
        return stream([STATUS, token(2), sse("end", {"status": "succeeded"})])

    tokens = list(client_for(handler).tokens("j1"))
    assert tokens == ["t1", "t2"] and seen == [None, "1-1"] and sleeps == [0.0]


def test_a_resume_starts_from_the_id_the_caller_gives(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Last-Event-ID"))
        return stream([STATUS, token(9), sse("end", {"status": "succeeded"})])

    assert list(client_for(handler).tokens("j1", last_event_id="1-8")) == ["t9"]
    assert seen == ["1-8"]


def test_a_stream_that_keeps_closing_early_gives_up_after_the_retries(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Last-Event-ID"))
        return stream([STATUS, token(len(seen))] if len(seen) == 1 else [STATUS])

    with pytest.raises(LadderConnectionError):
        list(client_for(handler).events("j1"))
    # Each try resumes where the first left off; only an entry with an id resets the count.
    assert seen == [None, "1-1", "1-1", "1-1"]
    assert sleeps == [0.25, 0.5, 1.0]


def test_an_unknown_job_s_stream_fails_at_once(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"title": "Not Found", "detail": "no job j1"})

    with pytest.raises(LadderError) as caught:
        list(client_for(handler).events("j1"))
    assert caught.value.status == 404 and sleeps == []


def test_a_refused_stream_is_tried_again_after_retry_after(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    answers = [
        httpx.Response(429, json={"title": "Too Many Requests"}, headers={"Retry-After": "2"}),
        stream([STATUS, sse("end", {"status": "succeeded"})]),
    ]
    events = list(client_for(lambda request: answers.pop(0)).events("j1"))
    assert [e.event for e in events] == ["status", "end"] and sleeps == [2.0]


def test_a_timeout_ends_the_events_quietly(client_for: Callable[..., Client]) -> None:
    class Slow(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield STATUS
            time.sleep(0.2)
            raise httpx.ReadTimeout("no keep-alive")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Slow())

    started = time.monotonic()
    events = list(client_for(handler).events("j1", timeout=0.1))
    assert [e.event for e in events] == ["status"] and time.monotonic() - started < 2
