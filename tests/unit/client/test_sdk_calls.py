"""The SDK's calls: submits retried safely under one Idempotency-Key, long polls up to 60 s
that respect Retry-After, listings followed page after page, artifacts streamed to files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ladder_client import Client, LadderConnectionError, LadderError

JobDoc = Callable[..., dict[str, Any]]


def test_submit_sends_only_what_the_caller_chose(
    client_for: Callable[..., Client], job_doc: JobDoc
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json=job_doc(), headers={"Location": "/api/v1/jobs/j1"})

    client = client_for(handler)
    job = client.submit("stairs", {"n": 10})
    assert job.id == "j1" and job.status == "queued" and not job.finished
    assert job.created_at is not None and job.created_at.year == 2026
    client.submit(
        "generate",
        {"prompt": "x"},
        priority=7,
        device="cpu",
        callback_url="https://example.com/hook",
    )
    assert json.loads(sent[0].content) == {"kind": "stairs", "params": {"n": 10}}
    assert json.loads(sent[1].content) == {
        "kind": "generate",
        "params": {"prompt": "x"},
        "priority": 7,
        "device": "cpu",
        "callback_url": "https://example.com/hook",
    }
    assert sent[0].headers["Authorization"] == "Bearer token"
    keys = {request.headers["Idempotency-Key"] for request in sent}
    assert len(keys) == 2  # one made for each submit


def test_a_submit_whose_answer_was_lost_is_sent_again_with_the_same_key(
    client_for: Callable[..., Client], job_doc: JobDoc, sleeps: list[float]
) -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        if len(keys) == 2:
            raise httpx.ReadError("connection reset", request=request)  # made, answer lost
        return httpx.Response(202, json=job_doc())

    assert client_for(handler).submit("stairs", {"n": 1}).id == "j1"
    assert len(keys) == 3 and len(set(keys)) == 1 and sleeps == [0.25, 0.5]


def test_the_caller_s_idempotency_key_is_used(
    client_for: Callable[..., Client], job_doc: JobDoc
) -> None:
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        return httpx.Response(202, json=job_doc())

    client_for(handler).submit("stairs", {"n": 1}, idempotency_key="mine-1")
    assert keys == ["mine-1"]


def test_a_submit_gives_up_after_its_retries(
    client_for: Callable[..., Client], sleeps: list[float]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(LadderConnectionError):
        client_for(handler).submit("stairs", {"n": 1})
    assert sleeps == [0.25, 0.5, 1.0]


def test_a_503_is_tried_again_but_a_429_or_422_submit_is_not(
    client_for: Callable[..., Client], job_doc: JobDoc, sleeps: list[float]
) -> None:
    answers = [
        httpx.Response(503, json={"title": "Service Unavailable"}, headers={"Retry-After": "5"}),
        httpx.Response(202, json=job_doc()),
    ]
    assert client_for(lambda request: answers.pop(0)).submit("stairs", {"n": 1}).id == "j1"
    assert sleeps == [5.0]
    for status in (422, 429):
        refusal = httpx.Response(status, json={"title": "no"}, headers={"Retry-After": "1"})
        with pytest.raises(LadderError) as caught:
            client_for(lambda request, refusal=refusal: refusal).submit("stairs", {"n": -1})
        assert caught.value.status == status
    assert sleeps == [5.0]


def test_submit_many_sends_one_batch_and_keeps_the_order(
    client_for: Callable[..., Client], job_doc: JobDoc
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/jobs/batch"
        jobs = json.loads(request.content)["jobs"]
        return httpx.Response(202, json={"items": [job_doc(f"j{i}") for i in range(len(jobs))]})

    made = client_for(handler).submit_many(
        [{"kind": "stairs", "params": {"n": n}} for n in range(3)]
    )
    assert [job.id for job in made] == ["j0", "j1", "j2"]


def test_wait_long_polls_until_the_job_ends_and_respects_retry_after(
    client_for: Callable[..., Client], job_doc: JobDoc, sleeps: list[float]
) -> None:
    waits: list[str | None] = []
    answers = [
        httpx.Response(200, json=job_doc(status="running", progress=0.5)),
        httpx.Response(429, json={"title": "Too Many Requests"}, headers={"Retry-After": "3"}),
        httpx.Response(200, json=job_doc(status="succeeded", result={"value": "89"})),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        waits.append(request.url.params.get("wait"))
        return answers.pop(0)

    job = client_for(handler).wait("j1")
    assert job.succeeded and job.result == {"value": "89"}
    assert waits == ["60", "60", "60"] and sleeps == [3.0]


def test_wait_with_a_timeout_hands_back_the_job_as_it_is(
    client_for: Callable[..., Client], job_doc: JobDoc
) -> None:
    waits: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        waits.append(request.url.params.get("wait"))
        return httpx.Response(200, json=job_doc(status="running"))

    job = client_for(handler).wait("j1", timeout=0.5)
    assert job.status == "running" and not job.finished
    assert waits == [None]  # under a second left: a plain read, no long poll


def test_jobs_follows_every_page(client_for: Callable[..., Client], job_doc: JobDoc) -> None:
    pages = {None: (["a", "b"], "c1"), "c1": (["c", "d"], "c2"), "c2": (["e"], None)}
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        ids, cursor = pages[request.url.params.get("cursor")]
        items = [job_doc(i, status="failed") for i in ids]
        return httpx.Response(200, json={"items": items, "next_cursor": cursor})

    jobs = client_for(handler).jobs(kind="stairs", status="failed", page_size=2)
    assert [job.id for job in jobs] == ["a", "b", "c", "d", "e"]
    assert asked[0] == {"kind": "stairs", "status": "failed", "limit": "2"}
    assert asked[2] == {"kind": "stairs", "status": "failed", "limit": "2", "cursor": "c2"}


def test_an_artifact_streams_to_its_file_whole_or_not_at_all(
    client_for: Callable[..., Client], tmp_path: Path
) -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield b"1234"
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/value.txt"):
            return httpx.Response(200, content=b"0123456789" * 1000)
        if request.url.path.endswith("/broken.txt"):
            return httpx.Response(200, stream=Broken())
        return httpx.Response(404, json={"title": "Not Found", "detail": "no artifact"})

    client = client_for(handler)
    assert client.artifact("j1", "value.txt", tmp_path / "value.txt") == 10_000
    assert (tmp_path / "value.txt").read_bytes() == b"0123456789" * 1000
    with pytest.raises(LadderConnectionError):
        client.artifact("j1", "broken.txt", tmp_path / "broken.txt")
    with pytest.raises(LadderError) as caught:
        client.artifact("j1", "nope.png", tmp_path / "nope.png")
    assert caught.value.status == 404
    assert sorted(p.name for p in tmp_path.iterdir()) == ["value.txt"]


def test_kinds_and_info(client_for: Callable[..., Client]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/kinds":
            kind = {
                "name": "stairs",
                "summary": "ways",
                "pools": ["cpu"],
                "params_schema": {"type": "object"},
                "limits": {"max_n": 10},
            }
            return httpx.Response(200, json={"items": [kind]})
        return httpx.Response(200, json={"version": "1.0.0", "limits": {"max_batch": 1000}})

    client = client_for(handler)
    (kind,) = client.kinds()
    assert kind.name == "stairs" and kind.pools == ["cpu"] and kind.limits == {"max_n": 10}
    assert client.info()["limits"]["max_batch"] == 1000


def test_a_chat_streams_its_deltas_and_a_failed_job_raises(
    client_for: Callable[..., Client],
) -> None:
    def chunk(delta: dict[str, str]) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}) + "\n\n"

    bodies = [
        chunk({"role": "assistant", "content": ""})
        + chunk({"content": "Hel"})
        + chunk({"content": "lo"})
        + "data: [DONE]\n\n",
        chunk({"content": "x"})
        + 'data: {"error": {"message": "the job ended failed"}}\n\n'
        + "data: [DONE]\n\n",
    ]
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(
            200, text=bodies.pop(0), headers={"Content-Type": "text/event-stream"}
        )

    client = client_for(handler)
    messages = [{"role": "user", "content": "Hi"}]
    assert list(client.chat(messages, model="tiny", max_tokens=5)) == ["Hel", "lo"]
    assert sent[0] == {"messages": messages, "stream": True, "model": "tiny", "max_tokens": 5}
    with pytest.raises(LadderError, match="ended failed"):
        list(client.chat(messages))


class CancelBehindAGateway:
    """A cancel that went through but whose answer a gateway lost (a 502 or 504, or a dropped
    connection): the next try finds the job already cancelled, a 409."""

    def __init__(self, job_doc: JobDoc, lost: int | None, final: str = "cancelled") -> None:
        self.job_doc, self.lost, self.final = job_doc, lost, final
        self.status = "running"
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        if request.method == "GET":
            return httpx.Response(200, json=self.job_doc(status=self.status))
        if self.status != "running":
            detail = f"the job has already ended as {self.status}"
            return httpx.Response(409, json={"title": "Conflict", "status": 409, "detail": detail})
        self.status = self.final
        if self.lost is None:
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(self.lost, text="Bad Gateway")


@pytest.mark.parametrize("lost", [502, 504, None])
def test_a_cancel_whose_answer_was_lost_hands_back_the_cancelled_job(
    client_for: Callable[..., Client], job_doc: JobDoc, sleeps: list[float], lost: int | None
) -> None:
    gateway = CancelBehindAGateway(job_doc, lost)
    job = client_for(gateway).cancel("j1")
    assert job.status == "cancelled" and job.finished
    assert gateway.calls == ["POST /api/v1/jobs/j1/cancel"] * 2 + ["GET /api/v1/jobs/j1"]


def test_a_retried_cancel_of_a_job_that_ended_otherwise_is_still_a_409(
    client_for: Callable[..., Client], job_doc: JobDoc, sleeps: list[float]
) -> None:
    gateway = CancelBehindAGateway(job_doc, 502, final="succeeded")  # it ended first
    with pytest.raises(LadderError) as caught:
        client_for(gateway).cancel("j1")
    assert caught.value.status == 409 and "succeeded" in caught.value.detail


def test_a_first_cancel_of_an_ended_job_is_a_409_without_a_look(
    client_for: Callable[..., Client], job_doc: JobDoc
) -> None:
    gateway = CancelBehindAGateway(job_doc, 502)
    gateway.status = "cancelled"  # cancelled before: this cancel did nothing
    with pytest.raises(LadderError) as caught:
        client_for(gateway).cancel("j1")
    assert caught.value.status == 409
    assert gateway.calls == ["POST /api/v1/jobs/j1/cancel"]
