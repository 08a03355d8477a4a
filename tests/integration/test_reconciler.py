"""Jobs the database holds but Redis lost, or a dead worker took, are sent again and finish
exactly once; jobs that are merely slow are left alone (the stack's worker reconciles after
RECONCILE_AFTER seconds instead of a minute)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from api import create_app
from shared import streams
from shared.db import Database
from shared.models import JobStatus, utcnow
from tests.processes import RECONCILE_AFTER, Stack
from tests.support import LONG, add_job, wait_for, wait_for_reconciler_passes


def test_jobs_whose_messages_redis_lost_are_sent_again_and_finish_once(stack: Stack) -> None:
    # An API whose messages go to another Redis database: as if Redis had restarted empty.
    lost = dataclasses.replace(
        stack.settings, broker_url=stack.settings.broker_url.rsplit("/", 1)[0] + "/9"
    )
    app = create_app(lost)
    headers = {"Authorization": f"Bearer {stack.client.token}"}
    ids = [
        app.test_client().post("/api/v1/jobs", json={"kind": "stairs", "params": {"n": n}},
                               headers=headers).get_json()["id"]
        for n in range(50)
    ]  # fmt: skip
    app.extensions["ladder"].db.engine.dispose()
    app.extensions["ladder"].redis.flushdb()
    done = [stack.client.wait(job_id, timeout=60) for job_id in ids]
    assert all(j["status"] == "succeeded" for j in done)
    assert all(j["attempts"] == 1 for j in done)  # sent again once, run once


def insert(stack: Stack, **values: object) -> str:
    db = Database(stack.settings.database_url)
    try:
        return add_job(db, **values)
    finally:
        db.engine.dispose()


def test_a_committed_job_whose_message_never_left_runs(stack: Stack) -> None:
    # As if the API died between its commit and its send.
    job_id = insert(stack, status=JobStatus.QUEUED)
    job = stack.client.wait(job_id, timeout=30)
    assert job["status"] == "succeeded" and job["result"]["value"] == "21"


def test_a_dead_workers_running_job_runs_again(stack: Stack) -> None:
    started = utcnow() - timedelta(seconds=30)
    job_id = insert(
        stack, status=JobStatus.RUNNING, worker="ghost@gone", attempts=1, started_at=started
    )
    job = stack.client.wait(job_id, timeout=30)
    assert job["status"] == "succeeded"
    assert job["attempts"] == 2 and job["worker"].startswith(f"{stack.worker.name}@")


def test_a_long_job_and_one_waiting_behind_it_are_never_sent_again(stack: Stack) -> None:
    # Given a job running for longer than RECONCILE_AFTER, its lease held, and one queued
    # behind it for as long, its message in Redis: by their rows alone both look stuck.
    redis = streams.connect(stack.settings.broker_url)
    running = stack.client.submit(LONG)
    stack.client.wait(running["id"], "running")
    with stack.worker.paused():  # running until we say, its lease held
        waiting = stack.client.submit({"n": 8})
        wait_for(lambda: _age(stack.client.job(waiting["id"])["created_at"]) > RECONCILE_AFTER,
                 "the waiting job older than RECONCILE_AFTER", 30)  # fmt: skip
        # When the reconciler has looked at them twice (it sends only what looked lost twice)
        wait_for_reconciler_passes(redis, 2, 30)
        assert stack.client.job(running["id"])["status"] == "running"
        assert stack.client.job(waiting["id"])["status"] == "queued"
    # Then it sent neither again, and each ran once.
    done = [stack.client.wait(job["id"], timeout=120) for job in (running, waiting)]
    assert [(job["status"], job["attempts"]) for job in done] == [("succeeded", 1)] * 2
    log = stack.worker.log_text()
    sent = [line for line in log.splitlines() if "reconciler: sent" in line]
    assert [line for line in sent if running["id"] in line or waiting["id"] in line] == []
    assert f"job {running['id']} is running on" not in log  # no second copy reached a worker


def _age(stamp: str) -> float:
    return (utcnow() - datetime.fromisoformat(stamp)).total_seconds()
