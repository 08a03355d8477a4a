"""AsyncClient: the same calls and the same policies as Client, awaited."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from ladder_client import AsyncClient

JobDoc = Callable[..., dict[str, Any]]


class Chunks(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes], drop: bool) -> None:
        self.parts, self.drop = parts, drop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        if self.drop:
            raise httpx.ReadError("connection reset by peer")


def token(n: int) -> bytes:
    return f'id: 1-{n}\nevent: token\ndata: {{"text": "t{n}"}}\n\n'.encode()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    taken: list[float] = []

    async def record(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr("ladder_client.async_client.asyncio.sleep", record)
    return taken


def test_submit_wait_list_and_resume_a_stream(job_doc: JobDoc, no_sleep: list[float]) -> None:
    keys: list[str] = []
    resumed: list[str | None] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            keys.append(request.headers["Idempotency-Key"])
            if len(keys) == 1:
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(202, json=job_doc())
        if path.endswith("/events"):
            resumed.append(request.headers.get("Last-Event-ID"))
            if len(resumed) == 1:
                return httpx.Response(200, stream=Chunks([token(1), b"id: 1-2\nev"], True))
            end = b'event: end\ndata: {"status": "succeeded"}\n\n'
            return httpx.Response(200, stream=Chunks([token(2), end], False))
        if path == "/api/v1/jobs":
            cursor = request.url.params.get("cursor")
            page = (
                {"items": [job_doc("a")], "next_cursor": "c1"}
                if cursor is None
                else {"items": [job_doc("b")], "next_cursor": None}
            )
            return httpx.Response(200, json=page)
        assert request.url.params["wait"] == "60"
        return httpx.Response(200, json=job_doc(status="succeeded"))

    async def scenario() -> tuple[Any, ...]:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://ladder.test", "t", transport=transport) as client:
            job = await client.submit("stairs", {"n": 3})
            done = await client.wait(job.id)
            tokens = [text async for text in client.tokens(job.id)]
            ids = [listed.id async for listed in client.jobs()]
            return job, done, tokens, ids

    job, done, tokens, ids = asyncio.run(scenario())
    assert job.id == "j1" and len(set(keys)) == 1 and len(keys) == 2
    assert done.succeeded
    assert tokens == ["t1", "t2"] and resumed == [None, "1-1"]
    assert ids == ["a", "b"]
    assert no_sleep == [0.25, 0.25]


def test_a_chat_streams_in_asyncio_too() -> None:
    body = (
        "".join(
            "data: " + json.dumps({"choices": [{"delta": {"content": piece}}]}) + "\n\n"
            for piece in ["Bon", "jour"]
        )
        + "data: [DONE]\n\n"
    )

    async def scenario() -> list[str]:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, text=body))
        async with AsyncClient("http://ladder.test", "t", transport=transport) as client:
            return [piece async for piece in client.chat([{"role": "user", "content": "Hi"}])]

    assert asyncio.run(scenario()) == ["Bon", "jour"]


def test_a_cancel_whose_answer_was_lost_hands_back_the_cancelled_job(
    job_doc: JobDoc, no_sleep: list[float]
) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json=job_doc(status="cancelled"))
        if len(calls) == 1:
            return httpx.Response(504, text="Gateway Timeout")  # it went through, unanswered
        return httpx.Response(409, json={"title": "Conflict", "detail": "ended as cancelled"})

    async def run() -> str:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://ladder.test", "t", transport=transport) as client:
            return (await client.cancel("j1")).status

    assert asyncio.run(run()) == "cancelled"
    assert calls == ["POST", "POST", "GET"]
