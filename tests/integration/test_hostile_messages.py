"""Celery takes JSON only: a pickle pushed onto a queue by hand is refused, never executed."""

from __future__ import annotations

import base64
import json
import os
import pickle
import time
import uuid
from pathlib import Path

from shared import streams
from tests.processes import Stack


class Payload:
    """Unpickling this runs a shell command: exactly what must never happen on a worker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_message_is_refused_and_logged_not_run(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    task_id = str(uuid.uuid4())
    body = pickle.dumps(((Payload(marker),), {}, {"callbacks": None, "errbacks": None}))
    # The envelope kombu's Redis transport keeps in a queue's list, pushed there by hand.
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "binary",
        "content-type": "application/x-python-serialize",
        "headers": {"lang": "py", "task": "ladder.run_job", "id": task_id, "argsrepr": "()"},
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": "cpu", "routing_key": "cpu"},
            "delivery_mode": 2,
            "delivery_tag": str(uuid.uuid4()),
            "priority": 0,
        },
    }
    streams.connect(stack.settings.broker_url).lpush("cpu", json.dumps(envelope))
    deadline = time.monotonic() + 30
    while "untrusted content" not in stack.worker.log_text():
        assert time.monotonic() < deadline, "the worker never said it refused the message"
        time.sleep(0.2)
    # The worker goes on serving JSON jobs: by the time one sent after it has run, the worker
    # is done with the pickle, and it ran nothing.
    assert stack.client.wait(stack.client.submit({"n": 9})["id"])["status"] == "succeeded"
    assert not marker.exists(), "the pickle was unpickled: a message ran code"
    assert f"ladder.run_job[{task_id}] received" not in stack.worker.log_text()
