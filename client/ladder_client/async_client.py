"""`AsyncClient`: `Client`'s twin for asyncio, the same methods awaited.

async with AsyncClient(url, token) as ladder:
    job = await ladder.submit("generate", {"prompt": "Once"})
    async for text in ladder.tokens(job.id):
        print(text, end="", flush=True)
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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


class AsyncClient:
    """A connection to one Ladder as one API key; see `Client` for what each method does."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("LADDER_URL") or protocol.DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("LADDER_TOKEN")
        self.retries = retries
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=protocol.auth_headers(self.token),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        device: str | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> Job:
        body = protocol.submit_body(kind, params, priority, device, callback_url)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}

        async def send() -> Job:
            return protocol.job_of(
                await self._send("POST", f"{API}/jobs", json=body, headers=headers)
            )

        return await self._retried(send, statuses=False)

    async def submit_many(
        self, jobs: list[JobSpec], *, idempotency_key: str | None = None
    ) -> list[Job]:
        body = protocol.batch_body(jobs)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}

        async def send() -> list[Job]:
            reply = await self._send("POST", f"{API}/jobs/batch", json=body, headers=headers)
            return [Job.from_json(item) for item in checked(reply).json()["items"]]

        return await self._retried(send, statuses=False)

    async def get(self, job_id: str) -> Job:
        async def send() -> Job:
            return protocol.job_of(await self._send("GET", job_path(job_id)))

        return await self._retried(send)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            step = protocol.wait_step(deadline)
            try:
                job = protocol.job_of(
                    await self._send(
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
                await asyncio.sleep(pause(failures - 1, error.retry_after))
                continue
            failures = 0
            if job.finished or step == 0:
                return job

    async def events(
        self, job_id: str, last_event_id: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[Event]:
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = Follow(last_event_id, deadline, self.retries)
        path = f"{job_path(job_id)}/events"
        while True:
            error: LadderError | None = None
            try:
                async with self._http.stream(
                    "GET",
                    path,
                    headers=follow.headers(),
                    timeout=httpx.Timeout(30.0, read=follow.read_timeout()),
                ) as response:
                    async for event in _events(response):
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
            await asyncio.sleep(follow.after_drop(error))

    async def tokens(self, job_id: str, last_event_id: str | None = None) -> AsyncIterator[str]:
        async for event in self.events(job_id, last_event_id):
            if event.event == "token" and isinstance(event.data, dict):
                yield str(event.data.get("text", ""))

    async def cancel(self, job_id: str) -> Job:
        tries = 0

        async def send() -> Job:
            nonlocal tries
            tries += 1
            response = await self._send("POST", f"{job_path(job_id)}/cancel")
            if tries > 1 and response.status_code == 409:  # as Client.cancel: a lost answer
                job = protocol.job_of(await self._send("GET", job_path(job_id)))
                if job.status == "cancelled":
                    return job
            return protocol.job_of(response)

        return await self._retried(send)

    async def jobs(
        self, *, kind: str | None = None, status: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[Job]:
        cursor = None
        while True:
            items, cursor = await self._page(
                protocol.listing_params(kind, status, page_size, cursor)
            )
            for item in items:
                yield item
            if not cursor:
                return

    async def _page(self, params: dict[str, str | int]) -> tuple[list[Job], str | None]:
        async def send() -> tuple[list[Job], str | None]:
            return protocol.page_of(await self._send("GET", f"{API}/jobs", params=params))

        return await self._retried(send)

    async def artifact(self, job_id: str, name: str, path: Target) -> int:
        try:
            async with self._http.stream("GET", protocol.artifact_path(job_id, name)) as response:
                if response.is_error:
                    await response.aread()
                    checked(response)
                if not isinstance(path, str | os.PathLike):
                    return await _copy(response.aiter_bytes(), path)
                target = Path(path)
                partial = target.with_name(target.name + ".part")
                try:
                    with partial.open("wb") as out:
                        size = await _copy(response.aiter_bytes(), out)
                    partial.replace(target)
                finally:
                    partial.unlink(missing_ok=True)
                return size
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    async def kinds(self) -> list[Kind]:
        async def send() -> list[Kind]:
            return protocol.kinds_of(await self._send("GET", f"{API}/kinds"))

        return await self._retried(send)

    async def info(self) -> dict[str, Any]:
        async def send() -> dict[str, Any]:
            body: dict[str, Any] = checked(await self._send("GET", f"{API}/info")).json()
            return body

        return await self._retried(send)

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> AsyncIterator[str]:
        body = protocol.chat_body(messages, model, max_tokens, temperature, seed)
        try:
            async with self._http.stream(
                "POST",
                "/v1/chat/completions",
                json=body,
                timeout=httpx.Timeout(30.0, read=protocol.STREAM_READ_TIMEOUT),
            ) as response:
                async for event in _events(response):
                    if event.data == "[DONE]":
                        return
                    if text := protocol.chat_delta(event.data):
                        yield text
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    async def _send(
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
            return await self._http.request(
                method,
                path,
                json=json,
                params=params,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    async def _retried(
        self, call: Callable[[], Awaitable[T]], *, connection: bool = True, statuses: bool = True
    ) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except LadderError as error:
                if attempt >= self.retries or not worth_retry(error, connection, statuses):
                    raise
                await asyncio.sleep(pause(attempt, error.retry_after))
                attempt += 1


async def _copy(chunks: AsyncIterator[bytes], out: IO[bytes]) -> int:
    size = 0
    async for chunk in chunks:
        out.write(chunk)
        size += len(chunk)
    return size


async def _events(response: httpx.Response) -> AsyncIterator[Event]:
    """The server-sent events of a streamed answer; a problem+json answer raises instead."""
    if response.is_error:
        await response.aread()
        checked(response)
    decoder = Decoder()
    async for line in response.aiter_lines():
        if (event := decoder.feed(line)) is not None:
            yield event
