"""Many clients following their jobs' event streams at once, from one thread (bench/ and tests/).

Each follower is a plain socket with a `GET /api/v1/jobs/{id}/events` on it; one selector reads
them all, so the client side costs little next to the API it measures.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass, field


@dataclass
class Follower:
    job_id: str
    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    ended_at: float | None = None

    @property
    def opened(self) -> bool:
        return b"200 OK" in self.received[:64] and b"event: status" in self.received

    @property
    def ended(self) -> bool:
        return self.ended_at is not None


class Followers:
    """Open one event stream per job and read them all until each has its `end` event."""

    def __init__(self, host: str, port: int, jobs: list[tuple[str, str]]) -> None:
        """Follow each (job id, its key's token)."""
        self.selector = selectors.DefaultSelector()
        self.all: list[Follower] = []
        for job_id, token in jobs:
            sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(
                f"GET /api/v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            sock.setblocking(False)
            follower = Follower(job_id, sock)
            self.selector.register(sock, selectors.EVENT_READ, follower)
            self.all.append(follower)

    def pump(self, seconds: float) -> None:
        """Read whatever has arrived, for up to `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in self.selector.select(timeout=min(left, 0.2)):
                follower: Follower = key.data
                try:
                    chunk = follower.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.selector.unregister(follower.sock)
                    continue
                follower.received += chunk
                if follower.ended_at is None and b"event: end" in follower.received:
                    follower.ended_at = time.monotonic()

    def wait(self, check: str, seconds: float) -> bool:
        """Pump until every follower is `opened` or `ended`; False if time ran out."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(getattr(f, check) for f in self.all):
                return True
            self.pump(0.5)
        return all(getattr(f, check) for f in self.all)

    def count(self, check: str) -> int:
        return sum(1 for f in self.all if getattr(f, check))

    def close(self) -> None:
        for follower in self.all:
            follower.sock.close()
        self.selector.close()
