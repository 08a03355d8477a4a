"""Workers, stats and metrics against the real Redis, with a real worker running."""

from __future__ import annotations

import re
from typing import Any

import redis
from sqlalchemy import func, select

from api import create_app, metrics
from api.metrics import RETRIED_PREFIX
from shared.db import Database
from shared.models import Job, JobTally
from shared.producer import TASK_NAME
from shared.workers import INTERVAL
from tests.processes import Stack
from tests.support import LONG, wait_for
from worker.factory import create_celery


def test_the_worker_registry_shows_the_live_worker_with_its_device_and_tallies(
    stack: Stack,
) -> None:
    long_job = stack.client.submit(LONG)
    stack.client.wait(long_job["id"], "running")
    # Held running until a heartbeat says so: the job may take no longer than INTERVAL.
    with stack.worker.paused():
        wait_for(lambda: long_job["id"] in mine(stack)["running"],
                 "the job in the worker's heartbeat", 3 * INTERVAL)  # fmt: skip
    stack.client.wait(long_job["id"], timeout=120)
    wait_for(lambda: not mine(stack)["running"], "the job gone from the heartbeat", 3 * INTERVAL)
    found = mine(stack)
    assert found["state"] == "online" and found["pool"] == "cpu"
    assert found["device"]["cores"] >= 1 and found["device"]["ram_bytes"] > 0
    assert found["counts"]["succeeded"] >= 1


def mine(stack: Stack) -> dict[str, Any]:
    workers = stack.client.call("GET", "/api/v1/workers").json()["items"]
    (found,) = [w for w in workers if w["name"].startswith(f"{stack.worker.name}@")]
    return found


def test_stats_count_jobs_and_read_queue_depths_from_redis(stack: Stack) -> None:
    stack.client.wait(stack.client.submit({"n": 13})["id"])
    producer = create_celery(stack.settings)
    # A message on a queue nobody serves here, to see the depth.
    producer.send_task(TASK_NAME, args=["no-such-job"], queue="gpu")
    try:
        stats = stack.client.call("GET", "/api/v1/stats").json()
        assert stats["queues"]["gpu"] == 1
        assert stats["jobs"]["by_status"]["succeeded"] >= 1
        assert stats["jobs"]["by_kind"]["stairs"]["succeeded"] >= 1
        recent = stats["windows"]["5m"]
        assert recent["finished"] >= 1 and recent["duration_p50_s"] is not None
        assert recent["duration_p50_s"] <= recent["duration_p95_s"]
    finally:
        with producer.connection_for_write() as connection:
            connection.default_channel.client.delete("gpu", *[f"gpu:{p}" for p in range(1, 10)])
        producer.close()


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{wanted}}} in the metrics")


def test_metrics_agree_with_the_database_in_every_api_process(stack: Stack) -> None:
    stack.client.wait(stack.client.submit({"n": 14})["id"])
    # What an earlier test's scrape left in the cache would be older than the job above.
    redis.Redis.from_url(stack.settings.broker_url).delete(metrics.CACHE_KEY)
    texts = []
    for _ in range(2):  # two API processes' worth of apps: each reads the same truth
        app = create_app(stack.settings)
        texts.append(app.test_client().get("/metrics").text)
        app.extensions["ladder"].db.engine.dispose()
    assert texts[0].split("ladder_queue_depth")[0] == texts[1].split("ladder_queue_depth")[0]
    text = texts[0]
    db = Database(stack.settings.database_url)
    with db.session() as session:
        # The workers' purge may have taken jobs from `jobs` into `job_tallies` meanwhile.
        purged = dict(
            session.execute(
                select(JobTally.status, JobTally.jobs).where(
                    JobTally.kind == "stairs", JobTally.status.not_like(f"{RETRIED_PREFIX}%")
                )
            ).all()
        )
        stairs = session.scalar(select(func.count()).where(Job.kind == "stairs"))
        stairs += sum(purged.values())
        done = session.scalar(
            select(func.count()).where(Job.kind == "stairs", Job.status == "succeeded")
        )
        done += purged.get("succeeded", 0)
    db.engine.dispose()
    assert metric(text, "ladder_jobs_submitted_total", kind="stairs") == stairs
    assert metric(text, "ladder_jobs_finished_total", kind="stairs", status="succeeded") == done
    assert metric(text, "ladder_job_duration_seconds_count", kind="stairs") >= 1
    assert metric(text, "ladder_job_duration_seconds_bucket", kind="stairs", le="+Inf") >= 1
    assert metric(text, "ladder_workers", pool="cpu", state="online") >= 1
    assert metric(text, "ladder_queue_depth", queue="cpu") >= 0
    assert re.search(r'ladder_device_memory_bytes\{device="ram",worker="[^"]+"\} \d', text)


def test_celery_inspect_ping_answers(stack: Stack) -> None:
    producer = create_celery(stack.settings)
    replies = producer.control.inspect(timeout=5).ping() or {}
    producer.close()
    assert any(name.startswith(f"{stack.worker.name}@") for name in replies)
