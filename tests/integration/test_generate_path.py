"""`generate` jobs through a real worker: tokens as server-sent events, resuming, cancel, and
the OpenAI front driven by the `openai` client package."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai

from shared import streams, workers
from tests.processes import Stack


def sse(
    stack: Stack, job_id: str, last_event_id: str | None = None
) -> Iterator[tuple[str | None, str, Any]]:
    """(id, event, data) for each server-sent event until the stream closes."""
    request = urllib.request.Request(f"{stack.base_url}/api/v1/jobs/{job_id}/events")
    request.add_header("Authorization", f"Bearer {stack.client.token}")
    if last_event_id:
        request.add_header("Last-Event-ID", last_event_id)
    with urllib.request.urlopen(request, timeout=120) as response:
        fields: dict[str, str] = {}
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if "event" in fields:
                yield fields.get("id"), fields["event"], json.loads(fields["data"])
            fields = {}


def test_tokens_arrive_as_events_and_add_up_to_the_text(stack: Stack) -> None:
    job = stack.client.submit({"prompt": "Climb", "max_new_tokens": 120}, kind="generate")
    events = list(sse(stack, job["id"]))
    tokens = [(i, d["text"]) for i, e, d in events if e == "token"]
    assert tokens and all(i for i, _ in tokens)
    assert events[-1][1] == "end" and events[-1][2] == {"status": "succeeded"}
    done = stack.client.job(job["id"])
    assert done["result"]["text"] == "".join(t for _, t in tokens)
    assert done["result"]["tokens"]["completion"] == 120
    assert done["result"]["finish_reason"] == "length"
    assert done["result"]["model_info"]["random_weights"] is True

    # Reconnecting with Last-Event-ID resumes right after that event.
    resumed = [(i, d["text"]) for i, e, d in sse(stack, job["id"], tokens[4][0]) if e == "token"]
    assert resumed == tokens[5:]


def test_cancel_stops_a_generation_and_keeps_what_it_had(stack: Stack) -> None:
    job = stack.client.submit({"prompt": "Go on", "max_new_tokens": 2048}, kind="generate")
    redis = streams.connect(stack.settings.broker_url)
    deadline = time.monotonic() + 60
    while not any(e == "token" for _, e, _ in streams.read(redis, job["id"], "0", None)):
        assert time.monotonic() < deadline, "no token was generated"
        time.sleep(0.05)
    reply = stack.client.call("POST", f"/api/v1/jobs/{job['id']}/cancel")
    assert reply.status == 200 and reply.json()["status"] == "cancelled"
    deadline = time.monotonic() + 30
    while (current := stack.client.job(job["id"]))["result"] is None:
        assert time.monotonic() < deadline, "the worker never stopped"
        time.sleep(0.1)
    assert current["status"] == "cancelled"
    assert current["result"]["finish_reason"] == "cancelled"
    assert current["result"]["tokens"]["completion"] < 2048
    # The same worker process goes on, with the model still loaded.
    after = stack.client.wait(
        stack.client.submit({"prompt": "Again", "max_new_tokens": 5}, kind="generate")["id"]
    )
    assert after["status"] == "succeeded" and after["result"]["timings"]["load_s"] < 5


def test_the_worker_beats_into_the_registry(stack: Stack) -> None:
    live = workers.live(streams.connect(stack.settings.broker_url))
    mine = [w for w in live if w["name"].startswith(f"{stack.worker.name}@")]
    assert mine and mine[0]["pool"] == "cpu" and mine[0]["queues"] == ["cpu"]
    generators = [w for w in live if w["name"].startswith(f"{stack.generator.name}@")]
    assert generators[0]["pool"] == "cpu" and generators[0]["queues"] == ["cpu.generate"]
    assert generators[0]["concurrency"] == 8  # LADDER_GENERATE_BATCH's default
    assert mine[0]["device"]["cores"] >= 1


def openai_client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.client.token, max_retries=0)


def test_the_openai_client_lists_models_and_completes(stack: Stack) -> None:
    client = openai_client(stack)
    assert "tiny-glm4" in [m.id for m in client.models.list()]
    completion = client.chat.completions.create(
        model="tiny-glm4", messages=[{"role": "user", "content": "你好"}], max_tokens=12, seed=1
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 12
    job_id = completion.id.removeprefix("chatcmpl-")
    assert stack.client.job(job_id)["result"]["text"] == choice.message.content


def test_the_openai_client_streams(stack: Stack) -> None:
    client = openai_client(stack)
    stream = client.chat.completions.create(
        model="tiny-glm4", messages=[{"role": "user", "content": "Hi"}], max_tokens=30, stream=True
    )
    pieces, reasons, ids = [], [], set()
    for chunk in stream:
        ids.add(chunk.id)
        pieces.append(chunk.choices[0].delta.content or "")
        reasons.append(chunk.choices[0].finish_reason)
    (completion_id,) = ids
    assert reasons[-1] == "length"
    text = stack.client.job(completion_id.removeprefix("chatcmpl-"))["result"]["text"]
    assert "".join(pieces) == text


def test_openai_errors_reach_the_client(stack: Stack) -> None:
    client = openai_client(stack)
    try:
        client.chat.completions.create(model="../etc", messages=[{"role": "user", "content": "x"}])
    except openai.UnprocessableEntityError as exc:
        assert "model" in str(exc)
    else:
        raise AssertionError("a path as a model name was accepted")


def test_jobs_submitted_together_decode_together_and_a_cancel_stops_only_its_own(
    stack: Stack,
) -> None:
    submit = stack.client.submit
    with stack.generator.paused():  # they all wait, then join one batch
        short = [submit({"prompt": f"Stair {i}", "max_new_tokens": 48}, kind="generate")["id"]
                 for i in range(7)]  # fmt: skip
        long = submit({"prompt": "Go on", "max_new_tokens": 2048}, kind="generate")["id"]
    redis = streams.connect(stack.settings.broker_url)
    deadline = time.monotonic() + 60
    while not any(e == "token" for _, e, _ in streams.read(redis, long, "0", None)):
        assert time.monotonic() < deadline, "no token was generated"
        time.sleep(0.02)
    assert stack.client.call("POST", f"/api/v1/jobs/{long}/cancel").status == 200
    ended = {job_id: stack.client.wait(job_id) for job_id in [*short, long]}
    assert ended[long]["status"] == "cancelled"
    assert ended[long]["result"]["finish_reason"] == "cancelled"
    for job_id in short:
        assert ended[job_id]["status"] == "succeeded"
        assert ended[job_id]["result"]["tokens"]["completion"] == 48
    # Several shared the model's batch (how many at once depends on when each arrived).
    assert max(ended[j]["result"]["timings"]["batch_size_max"] for j in short) > 1
