"""Jobs the database holds but Redis lost, or a dead worker took, are sent again and finish
exactly once (the stack's worker reconciles after 2 s instead of a minute)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import timedelta

from sqlalchemy import select

from api import create_app
from shared.db import Database
from shared.models import ApiKey, Job, JobStatus, utcnow
from tests.integration.conftest import Stack


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
    job_id = str(uuid.uuid4())
    with db.session() as session:
        key = session.scalars(select(ApiKey.id).where(ApiKey.is_admin)).first()
        params = {"n": 7, "steps": [1, 2], "modulus": None}
        session.add(Job(id=job_id, api_key_id=key, kind="stairs", params=params, priority=5,
                        device="auto", queue="cpu", **values))  # fmt: skip
    db.engine.dispose()
    return job_id


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


def test_nothing_is_sent_twice_while_things_are_well(stack: Stack) -> None:
    job = stack.client.wait(stack.client.submit({"n": 3})["id"])
    time.sleep(5)  # two reconciler passes
    assert stack.client.job(job["id"])["attempts"] == 1
