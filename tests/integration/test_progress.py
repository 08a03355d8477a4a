"""Progress through the real stack: a job's event stream carries rising `progress` events before
its `end`, and its row's `progress` moves while it runs and never after it has ended."""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

from tests.processes import Stack
from tests.support import ADMIN_TOKEN, LONG, wait_for


def follow(stack: Stack, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) for each server-sent event of the job, as it comes, until the stream ends."""
    request = urllib.request.Request(f"{stack.base_url}/api/v1/jobs/{job_id}/events")
    request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    with urllib.request.urlopen(request, timeout=120) as response:
        fields: dict[str, str] = {}
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif "event" in fields:
                yield fields["event"], json.loads(fields["data"])
                fields = {}


def rising(values: list[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def test_a_generation_reports_its_tokens_before_it_ends(stack: Stack) -> None:
    # Given a generation long enough to last some seconds
    job = stack.client.submit({"prompt": "Climb", "max_new_tokens": 1024}, kind="generate")
    # When a client follows it, and looks at the job whenever it hears of progress
    events, rows = [], []
    for event, data in follow(stack, job["id"]):
        events.append((event, data))
        if event == "progress":
            rows.append(stack.client.job(job["id"]))
    # Then it heard rising progress, counted in tokens, before the end
    progress = [data for event, data in events if event == "progress"]
    assert len(progress) >= 2, events
    assert rising([p["progress"] for p in progress]) and rising([p["tokens"] for p in progress])
    assert all(0 < p["progress"] <= 1 and p["max_tokens"] == 1024 for p in progress)
    assert all(p["progress"] == round(p["tokens"] / 1024, 4) for p in progress)
    names = [event for event, _ in events]
    assert names[-1] == "end" and events[-1][1] == {"status": "succeeded"}
    assert names.index("progress") < names.index("end")
    # and the row, read meanwhile, only rose, within [0, 1), while the job ran
    running = [row["progress"] for row in rows if row["status"] == "running"]
    assert all(0 <= p < 1 for p in running) and running == sorted(running)
    assert stack.client.job(job["id"])["progress"] == 1.0


def test_an_attention_text_job_reports_its_layers_then_its_stages(stack: Stack) -> None:
    params = {"text": "How many ways are there to climb ten stairs?", "return_matrices": True}
    job = stack.client.submit(params, kind="attention")
    events = list(follow(stack, job["id"]))
    progress = [data for event, data in events if event == "progress"]
    stages = [p["stage"] for p in progress]
    # A new stage always goes out; the layers within the forward pass may be thinned out.
    assert stages[0] == "forward" and progress[0]["layers"] == 6
    assert stages[-5:] == ["statistics", "heatmap", "rollout", "matrices", "explorer"]
    assert rising([p["progress"] for p in progress]) and progress[0]["progress"] > 0
    assert progress[-1]["progress"] < 1
    assert events[-1] == ("end", {"status": "succeeded"})
    assert stack.client.job(job["id"])["progress"] == 1.0


def test_a_long_stairs_run_moves_its_row_until_it_is_cancelled(stack: Stack) -> None:
    # Given a stairs job of several seconds (Kitamasa, steps 1..50), running
    job = stack.client.submit(LONG)
    seen: list[dict[str, Any]] = []

    def partway() -> bool:
        seen.append(stack.client.job(job["id"]))
        assert seen[-1]["status"] in ("queued", "running"), seen[-1]
        return 0 < seen[-1]["progress"] < 1

    # When its row shows it partway
    wait_for(partway, "the row's progress between 0 and 1 while the job runs")
    values = [row["progress"] for row in seen]
    assert values == sorted(values)
    # and a client cancels it
    reply = stack.client.call("POST", f"/api/v1/jobs/{job['id']}/cancel")
    assert reply.status == 200 and reply.json()["status"] == "cancelled"
    at_cancel = reply.json()["progress"]
    # Then the run stops, and nothing it reported reaches the row any more: once the worker has
    # moved on to another job, the cancelled one has the progress it had when it was cancelled.
    after = stack.client.wait(stack.client.submit({"n": 6})["id"], timeout=60)
    assert after["status"] == "succeeded"
    ended = stack.client.job(job["id"])
    assert ended["status"] == "cancelled" and ended["progress"] == at_cancel < 1
