"""The Python SDK against the real stack: submit, wait, stream tokens through a dropped
connection, cancel, list across pages, download an artifact, and every kind of error."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ladder_client import AsyncClient, Client, LadderConnectionError, LadderError
from tests.processes import Stack
from tests.support import ADMIN_TOKEN, LONG


@pytest.fixture
def ladder(stack: Stack) -> Iterator[Client]:
    with Client(stack.base_url, ADMIN_TOKEN) as client:
        yield client


class CuttingProxy:
    """A TCP relay to the API that cuts the first event stream it carries right after its
    third `token` event and a few bytes of the next one, as a dropped connection would."""

    TOKENS = 3

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        self.resumed_from: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                downstream.close()
                continue
            following = threading.Event()
            threading.Thread(
                target=self._up, args=(downstream, upstream, following), daemon=True
            ).start()
            threading.Thread(
                target=self._down, args=(upstream, downstream, following), daemon=True
            ).start()

    def _up(self, client: socket.socket, server: socket.socket, following: threading.Event) -> None:
        with server:
            while data := _recv(client):
                if b"/events" in data:
                    following.set()
                    for line in data.split(b"\r\n"):
                        if line.lower().startswith(b"last-event-id:"):
                            self.resumed_from.append(line.split(b":", 1)[1].strip().decode())
                if not _send(server, data):
                    return

    def _down(
        self, server: socket.socket, client: socket.socket, following: threading.Event
    ) -> None:
        seen = b""
        with client:
            while data := _recv(server):
                if not following.is_set() or self.cut.is_set():
                    if not _send(client, data):
                        return
                    continue
                seen += data
                at = -1
                for _ in range(self.TOKENS):
                    at = seen.find(b"event: token", at + 1)
                    if at < 0:
                        break
                end = seen.find(b"\n\n", at) if at >= 0 else -1
                if end < 0:
                    continue  # keep it until the cut point has arrived
                self.cut.set()
                _send(client, seen[: end + 2 + 6])  # with the start of the next event
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
                server.close()
                return


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def test_submit_and_wait(ladder: Client) -> None:
    job = ladder.submit("stairs", {"n": 10})
    assert job.status == "queued" and job.kind == "stairs"
    done = ladder.wait(job.id, timeout=30)
    assert done.succeeded and done.result is not None and done.result["value"] == "89"
    assert done.finished_at is not None and done.progress == 1.0
    assert ladder.get(job.id).result == done.result


def test_the_same_idempotency_key_gives_back_the_same_job(ladder: Client) -> None:
    first = ladder.submit("stairs", {"n": 11}, idempotency_key="sdk-same-key")
    again = ladder.submit("stairs", {"n": 11}, idempotency_key="sdk-same-key")
    assert again.id == first.id
    with pytest.raises(LadderError) as caught:
        ladder.submit("stairs", {"n": 12}, idempotency_key="sdk-same-key")
    assert caught.value.status == 409


def test_tokens_survive_a_dropped_connection(stack: Stack) -> None:
    proxy = CuttingProxy(int(stack.base_url.rsplit(":", 1)[1]))
    try:
        with Client(proxy.url, ADMIN_TOKEN) as client:
            job = client.submit("generate", {"prompt": "Climb", "max_new_tokens": 40})
            events = list(client.events(job.id))
            done = client.wait(job.id, timeout=30)
    finally:
        proxy.close()
    assert proxy.cut.is_set() and len(proxy.resumed_from) == 1
    tokens = [e for e in events if e.event == "token"]
    ids = [e.id for e in tokens]
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids, key=lambda i: tuple(map(int, str(i).split("-"))))
    assert proxy.resumed_from == [ids[CuttingProxy.TOKENS - 1]]
    assert done.result is not None
    assert "".join(e.data["text"] for e in tokens) == done.result["text"]
    assert events[-1].event == "end" and events[-1].data == {"status": "succeeded"}


def test_cancel_a_running_job(ladder: Client) -> None:
    job = ladder.submit("stairs", LONG)
    cancelled = ladder.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished
    assert ladder.wait(job.id, timeout=5).status == "cancelled"
    with pytest.raises(LadderError) as caught:
        ladder.cancel(job.id)
    assert caught.value.status == 409 and "cancelled" in caught.value.detail


class LosingGateway(httpx.HTTPTransport):
    """A gateway that passes the first cancel through to the API and then answers 502, as one
    whose upstream read timed out after the work was done."""

    def __init__(self) -> None:
        super().__init__()
        self.cancels = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/cancel"):
            self.cancels += 1
            if self.cancels == 1:
                response.read()
                response.close()
                return httpx.Response(502, text="Bad Gateway", request=request)
        return response


def test_a_cancel_whose_answer_a_gateway_lost_still_hands_back_the_job(stack: Stack) -> None:
    gateway = LosingGateway()
    with Client(stack.base_url, ADMIN_TOKEN, transport=gateway) as client:
        job = client.submit("stairs", LONG)
        cancelled = client.cancel(job.id)
        assert cancelled.id == job.id and cancelled.status == "cancelled"
        assert gateway.cancels == 2  # the retry got a 409, and the job was looked up
        with pytest.raises(LadderError) as caught:
            client.cancel(job.id)  # a first try at an ended job is still a 409
        assert caught.value.status == 409


def test_jobs_lists_across_pages(ladder: Client) -> None:
    made = ladder.submit_many([{"kind": "stairs", "params": {"n": n}} for n in range(5)])
    assert [job.status for job in made] == ["queued"] * 5
    listed = []
    for job in ladder.jobs(kind="stairs", page_size=2):
        listed.append(job.id)
        if len(listed) == 7:  # past three pages' worth
            break
    assert listed[:5] == [job.id for job in reversed(made)]
    assert len(set(listed)) == 7


def test_an_artifact_downloads_to_a_file(ladder: Client, tmp_path: Path) -> None:
    done = ladder.wait(ladder.submit("stairs", {"n": 500_000}).id, timeout=60)
    assert done.succeeded and done.result is not None
    assert done.result["artifact"] == "value.txt"
    size = ladder.artifact(done.id, "value.txt", tmp_path / "value.txt")
    text = (tmp_path / "value.txt").read_text()
    assert size == len(text) == done.result["digits"] > 100_000
    assert text.startswith(done.result["leading"]) and text.endswith(done.result["trailing"])


def test_errors_carry_the_problem(stack: Stack, ladder: Client) -> None:
    with pytest.raises(LadderError) as invalid:
        ladder.submit("stairs", {"n": -1})
    assert invalid.value.status == 422 and invalid.value.title == "Unprocessable Entity"
    assert [e.field for e in invalid.value.errors] == ["params.n"]
    with pytest.raises(LadderError) as batch:
        ladder.submit_many(
            [{"kind": "stairs", "params": {"n": 1}}, {"kind": "stairs", "params": {"n": "x"}}]
        )
    assert batch.value.status == 422 and batch.value.errors[0].field.startswith("jobs[1]")
    with pytest.raises(LadderError) as unknown:
        ladder.get("00000000-0000-0000-0000-000000000000")
    assert unknown.value.status == 404
    with Client(stack.base_url, "not-a-token") as stranger, pytest.raises(LadderError) as denied:
        stranger.info()
    assert denied.value.status == 401
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = Client(f"http://127.0.0.1:{port}", ADMIN_TOKEN, retries=0)
    with nowhere, pytest.raises(LadderConnectionError):
        nowhere.get("anything")


def test_kinds_and_info(ladder: Client) -> None:
    names = {kind.name for kind in ladder.kinds()}
    assert {"stairs", "attention", "generate"} <= names
    assert ladder.info()["limits"]["max_batch"] == 1000


def test_the_async_client(stack: Stack) -> None:
    async def scenario() -> tuple[str, str]:
        async with AsyncClient(stack.base_url, ADMIN_TOKEN) as client:
            job = await client.submit("generate", {"prompt": "Hi", "max_new_tokens": 8})
            text = "".join([piece async for piece in client.tokens(job.id)])
            done = await client.wait(job.id, timeout=30)
            assert done.result is not None
            return text, done.result["text"]

    streamed, stored = asyncio.run(scenario())
    assert streamed == stored
