"""The SDK against httpx's MockTransport: a handler plays the API, no server runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ladder_client import Client

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the SDK takes, recorded instead of slept."""
    taken: list[float] = []
    monkeypatch.setattr("ladder_client.client.time.sleep", taken.append)
    return taken


@pytest.fixture
def client_for() -> Callable[[Handler], Client]:
    def make(handler: Handler) -> Client:
        return Client("http://ladder.test", "token", transport=httpx.MockTransport(handler))

    return make


@pytest.fixture
def job_doc() -> Callable[..., dict[str, Any]]:
    """A job as the API shows it."""

    def make(job_id: str = "j1", status: str = "queued", **fields: Any) -> dict[str, Any]:
        return {
            "id": job_id,
            "kind": "stairs",
            "status": status,
            "params": {"n": 10},
            "result": None,
            "summary": None,
            "error": None,
            "priority": 5,
            "device": "auto",
            "queue": "cpu",
            "attempts": 0,
            "worker": None,
            "progress": 0.0,
            "created_at": "2026-01-01T00:00:00Z",
            "started_at": None,
            "finished_at": None,
            **fields,
        }

    return make
