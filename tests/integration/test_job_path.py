"""The path of a job through real processes: HTTP → database → Redis → Celery worker → database."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import urllib.request

import gmpy2

from api import create_app
from tests.processes import Stack
from tests.support import LONG, Client, wait_for
from worker.kinds.stairs import ways


def test_stairs_10_succeeds_with_89(stack: Stack) -> None:
    reply = stack.client.call("POST", "/api/v1/jobs", {"kind": "stairs", "params": {"n": 10}})
    assert reply.status == 202
    location = reply.headers["Location"]
    job = stack.client.wait(location.rsplit("/", 1)[-1])
    assert job["status"] == "succeeded", job
    assert job["result"]["value"] == "89"
    assert job["result"]["digits"] == 2 and job["result"]["algorithm"] == "fib"
    assert job["attempts"] == 1
    assert job["worker"].startswith(f"{stack.worker.name}@")
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    assert job["progress"] == 1.0


def test_a_long_job_is_seen_queued_then_running_then_succeeded(stack: Stack) -> None:
    job = stack.client.submit(LONG)
    assert job["status"] == "queued"
    running = stack.client.wait(job["id"], "running", "succeeded")
    assert running["status"] == "running" and running["started_at"] and not running["finished_at"]
    done = stack.client.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded"
    assert done["result"]["algorithm"] == "kitamasa"
    assert done["result"]["digits"] > 100_000  # stored as an artifact


def test_ten_million_stairs_exact_as_an_artifact(stack: Stack) -> None:
    job = stack.client.wait(stack.client.submit({"n": 10_000_000})["id"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["digits"] == 2_089_877
    assert "value" not in result and result["artifact"] == "value.txt"
    reply = stack.client.call("GET", result["artifact_url"])
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    text = reply.body.decode()
    assert len(text) == 2_089_877
    assert text[:20] == result["leading"] and text[-20:] == result["trailing"]
    assert text[-20:] == gmpy2.mpz(gmpy2.fib(10_000_001) % 10**20).digits().zfill(20)


def test_modular_answer_for_n_of_10_to_the_18(stack: Stack) -> None:
    params = {"n": 10**18, "steps": [1, 3, 7], "modulus": 10**9 + 7}
    job = stack.client.wait(stack.client.submit(params)["id"])
    assert job["result"]["value"] == str(ways(10**18, [1, 3, 7], 10**9 + 7))
    assert job["result"]["modulus"] == 10**9 + 7


def test_cancel_a_queued_job_and_a_running_one(stack: Stack) -> None:
    client = stack.client
    long_job = client.submit(LONG)
    client.wait(long_job["id"], "running")
    waiting = client.submit({"n": 5})  # the one worker process is busy: this one waits
    cancelled = client.call("POST", f"/api/v1/jobs/{waiting['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    stopped = client.call("POST", f"/api/v1/jobs/{long_job['id']}/cancel").json()
    assert stopped["status"] == "cancelled"
    # The worker carries on with new work, and neither cancelled job ever ends otherwise.
    after = client.wait(client.submit({"n": 6})["id"], timeout=60)
    assert after["status"] == "succeeded" and after["result"]["value"] == "13"
    # The cancelled job's message reached the worker (before the one after it) and was dropped:
    # by Celery, as revoked, or by the job's row, as ended.
    dropped = (
        f"Discarding revoked task: ladder.run_job[{waiting['id']}]",
        f"job {waiting['id']}: nothing to run",
    )
    wait_for(lambda: any(line in stack.worker.log_text() for line in dropped),
             "the worker dropping the cancelled job's message", 30)  # fmt: skip
    assert client.job(waiting["id"])["status"] == "cancelled"
    assert client.job(waiting["id"])["attempts"] == 0
    assert client.job(long_job["id"])["status"] == "cancelled"
    assert client.job(long_job["id"])["result"] is None


def test_a_redelivered_message_for_a_finished_job_changes_nothing(stack: Stack) -> None:
    from shared.producer import TASK_NAME
    from worker.factory import create_celery

    job = stack.client.wait(stack.client.submit({"n": 20})["id"])
    producer = create_celery(stack.settings)
    producer.send_task(TASK_NAME, args=[job["id"]], queue="cpu")
    producer.close()
    deadline = time.monotonic() + 30
    while f"job {job['id']}: nothing to run" not in stack.worker.log_text():
        assert time.monotonic() < deadline, "the worker never took the second message"
        time.sleep(0.1)
    assert stack.client.job(job["id"]) == job


def test_a_worker_killed_mid_job_is_redelivered_and_the_job_finishes_once(stack: Stack) -> None:
    job = stack.client.submit(LONG)
    stack.client.wait(job["id"], "running")
    (child,) = stack.worker.children()
    os.kill(child, signal.SIGKILL)
    done = stack.client.wait(job["id"], timeout=120)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2


def test_events_stream_follows_the_job_to_its_end(stack: Stack) -> None:
    job = stack.client.submit({"n": 30})
    request = urllib.request.Request(f"{stack.base_url}/api/v1/jobs/{job['id']}/events")
    request.add_header("Authorization", f"Bearer {stack.client.token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    assert events[-1].startswith("event: end")
    assert '"status": "succeeded"' in events[-2] and '"value": "1346269"' in events[-2]


def test_readyz_checks_the_database_and_the_broker(stack: Stack) -> None:
    reply = Client(stack.base_url).call("GET", "/readyz")
    assert reply.status == 200
    assert reply.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_a_job_past_its_time_limit_fails_with_timeout(stack: Stack) -> None:
    # An API whose config gives stairs 3 s; the worker enforces what the message carries.
    settings = dataclasses.replace(stack.settings, time_limits={"stairs": 3})
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {stack.client.token}"}
    body = {"kind": "stairs", "params": LONG}
    reply = app.test_client().post("/api/v1/jobs", json=body, headers=headers)
    app.extensions["ladder"].db.engine.dispose()
    assert reply.status_code == 202
    job = stack.client.wait(reply.get_json()["id"], timeout=60)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "timeout"
    assert "3 s" in job["error"]["message"]
    assert job["attempts"] == 1
