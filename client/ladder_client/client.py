"""`Client`: Ladder's HTTP API from Python, blocking. `AsyncClient` is its asyncio twin.

from ladder_client import Client

with Client("http://127.0.0.1:8000", token) as ladder:
    job = ladder.submit("stairs", {"n": 10})
    print(ladder.wait(job.id).result["value"])  # 89
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from ladder_client import protocol
from ladder_client.errors import LadderError, unreachable
from ladder_client.models import Event, Job, JobSpec, Kind
from ladder_client.protocol import API, Follow, checked, job_path, pause, transient, worth_retry
from ladder_client.sse import Decoder

T = TypeVar("T")
Target = str | os.PathLike[str] | IO[bytes]
"""Where an artifact goes: a path (written whole or not at all) or an open binary file."""


class Client:
    """A connection to one Ladder as one API key. `url` and `token` default to the
    environment's LADDER_URL and LADDER_TOKEN; `retries` bounds the extra tries a call makes
    when no answer came or the answer was "not now" (429, 503)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("LADDER_URL") or protocol.DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("LADDER_TOKEN")
        self.retries = retries
        self._http = httpx.Client(
            base_url=self.url,
            headers=protocol.auth_headers(self.token),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        device: str | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> Job:
        """Submit a job; the job as queued. A dropped connection or a 503 is tried again with
        the same Idempotency-Key (one is made when none is given), so it never makes two."""
        body = protocol.submit_body(kind, params, priority, device, callback_url)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return self._retried(
            lambda: protocol.job_of(self._send("POST", f"{API}/jobs", json=body, headers=headers)),
            statuses=False,
        )

    def submit_many(self, jobs: list[JobSpec], *, idempotency_key: str | None = None) -> list[Job]:
        """Submit up to 1,000 jobs at once: all are made, in order, or none (a 422 names the
        culprit as `jobs[i]…`). Retried as `submit` is."""
        body = protocol.batch_body(jobs)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}

        def send() -> list[Job]:
            reply = checked(self._send("POST", f"{API}/jobs/batch", json=body, headers=headers))
            return [Job.from_json(item) for item in reply.json()["items"]]

        return self._retried(send, statuses=False)

    def get(self, job_id: str) -> Job:
        return self._retried(lambda: protocol.job_of(self._send("GET", job_path(job_id))))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """The job once it has ended; after `timeout` seconds, the job as it is then (check
        `job.finished`). Long polls of up to 60 s each, so waiting costs a request a minute."""
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            step = protocol.wait_step(deadline)
            try:
                job = protocol.job_of(
                    self._send(
                        "GET",
                        job_path(job_id),
                        params={"wait": step} if step else None,
                        timeout=step + protocol.READ_SLACK,
                    )
                )
            except LadderError as error:
                failures += 1
                if not transient(error) or failures > self.retries:
                    raise
                time.sleep(pause(failures - 1, error.retry_after))
                continue
            failures = 0
            if job.finished or step == 0:
                return job

    def events(
        self, job_id: str, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[Event]:
        """The job's server-sent events until its `end`: `status` (the whole job) as each
        connection opens and on each change, and `progress`, `token`, `stage`… in order. A
        dropped connection is resumed after the last event seen (Last-Event-ID), so none of
        those is lost or repeated. With `timeout`, the iteration stops quietly after that many
        seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = Follow(last_event_id, deadline, self.retries)
        path = f"{job_path(job_id)}/events"
        while True:
            error: LadderError | None = None
            try:
                with self._http.stream(
                    "GET", path, headers=follow.headers(), timeout=self._stream_timeout(follow)
                ) as response:
                    for event in _events(response):
                        if not follow.see(event):
                            break
                        yield event
                        if event.ends_stream or follow.expired():
                            return
            except httpx.TransportError as exc:
                error = unreachable(self.url, exc)
            except LadderError as exc:
                error = exc
            if follow.expired():
                return
            time.sleep(follow.after_drop(error))

    def tokens(self, job_id: str, last_event_id: str | None = None) -> Iterator[str]:
        """The text of a generate job's tokens as they come (resuming as `events` does)."""
        for event in self.events(job_id, last_event_id):
            if event.event == "token" and isinstance(event.data, dict):
                yield str(event.data.get("text", ""))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job; the job as cancelled. A job that has already ended
        is a 409. A try whose answer was lost (a dropped connection, a 502-504 from a gateway)
        is made again; where the lost try did cancel the job, the 409 that the next one gets is
        answered with the job, cancelled, as the lost answer would have been."""
        tries = 0

        def send() -> Job:
            nonlocal tries
            tries += 1
            response = self._send("POST", f"{job_path(job_id)}/cancel")
            if tries > 1 and response.status_code == 409:
                job = protocol.job_of(self._send("GET", job_path(job_id)))
                if job.status == "cancelled":
                    return job
            return protocol.job_of(response)

        return self._retried(send)

    def jobs(
        self, *, kind: str | None = None, status: str | None = None, page_size: int | None = None
    ) -> Iterator[Job]:
        """Every job of this key (every key's, for an admin), newest first, page after page.
        Listed jobs are brief: a `summary`, but no `params` or `result` (`get` has them)."""
        cursor = None
        while True:
            items, cursor = self._page(protocol.listing_params(kind, status, page_size, cursor))
            yield from items
            if not cursor:
                return

    def _page(self, params: dict[str, str | int]) -> tuple[list[Job], str | None]:
        return self._retried(
            lambda: protocol.page_of(self._send("GET", f"{API}/jobs", params=params))
        )

    def artifact(self, job_id: str, name: str, path: Target) -> int:
        """Stream the job's artifact `name` (value.txt, heatmap.png, …) into `path`; the bytes
        written. A path is written whole or not at all."""
        try:
            with self._http.stream("GET", protocol.artifact_path(job_id, name)) as response:
                if response.is_error:
                    response.read()
                    checked(response)
                if not isinstance(path, str | os.PathLike):
                    return _copy(response.iter_bytes(), path)
                target = Path(path)
                partial = target.with_name(target.name + ".part")
                try:
                    with partial.open("wb") as out:
                        size = _copy(response.iter_bytes(), out)
                    partial.replace(target)
                finally:
                    partial.unlink(missing_ok=True)
                return size
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    def kinds(self) -> list[Kind]:
        return self._retried(lambda: protocol.kinds_of(self._send("GET", f"{API}/kinds")))

    def info(self) -> dict[str, Any]:
        """The service's version, retention policy and this key's limits."""
        return self._retried(lambda: checked(self._send("GET", f"{API}/info")).json())

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """A chat completion (`POST /v1/chat/completions`, streamed): its text as it comes.
        A job that ends without succeeding raises JobError."""
        body = protocol.chat_body(messages, model, max_tokens, temperature, seed)
        try:
            with self._http.stream(
                "POST",
                "/v1/chat/completions",
                json=body,
                timeout=httpx.Timeout(30.0, read=protocol.STREAM_READ_TIMEOUT),
            ) as response:
                for event in _events(response):
                    if event.data == "[DONE]":
                        return
                    if text := protocol.chat_delta(event.data):
                        yield text
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            return self._http.request(
                method,
                path,
                json=json,
                params=params,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    def _stream_timeout(self, follow: Follow) -> httpx.Timeout:
        return httpx.Timeout(30.0, read=follow.read_timeout())

    def _retried(
        self, call: Callable[[], T], *, connection: bool = True, statuses: bool = True
    ) -> T:
        """`call`, tried again after a pause when no answer came (`connection`) or the answer
        was "not now" (`statuses`: 429, 502-504, after their Retry-After)."""
        attempt = 0
        while True:
            try:
                return call()
            except LadderError as error:
                if attempt >= self.retries or not worth_retry(error, connection, statuses):
                    raise
                time.sleep(pause(attempt, error.retry_after))
                attempt += 1


def _copy(chunks: Iterator[bytes], out: IO[bytes]) -> int:
    size = 0
    for chunk in chunks:
        out.write(chunk)
        size += len(chunk)
    return size


def _events(response: httpx.Response) -> Iterator[Event]:
    """The server-sent events of a streamed answer; a problem+json answer raises instead."""
    if response.is_error:
        response.read()
        checked(response)
    decoder = Decoder()
    for line in response.iter_lines():
        if (event := decoder.feed(line)) is not None:
            yield event
