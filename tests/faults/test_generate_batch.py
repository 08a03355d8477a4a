"""A generate worker's batch under faults: killed mid-batch it loses no job, and SIGTERM lets
the batch in flight finish."""

from __future__ import annotations

import signal

from tests.processes import Cluster
from tests.support import wait_for

GENERATE = "cpu.generate"


def submit(cluster: Cluster, count: int, tokens: int) -> list[str]:
    return [
        cluster.client.submit({"prompt": f"Stair {i}", "max_new_tokens": tokens}, kind="generate")[
            "id"
        ]
        for i in range(count)
    ]


def test_a_generate_worker_killed_mid_batch_loses_no_job(cluster: Cluster) -> None:
    worker = cluster.worker("g", concurrency=4, queue=GENERATE)
    ids = submit(cluster, 6, 1500)
    wait_for(lambda: len(cluster.running_on(worker)) >= 3, "a batch of three running", 60)
    worker.kill()
    killed_in = cluster.running_on(worker)  # a dead worker changes no row: these it died in
    assert len(killed_in) >= 3
    cluster.worker("g", concurrency=4, queue=GENERATE)  # the host comes back
    rows = cluster.wait_until_ended(6, timeout=300)
    assert sorted(rows) == sorted(ids)
    for job_id, job in rows.items():
        assert job.status == "succeeded", (job_id, job.error)
        assert job.result is not None and job.result["tokens"]["completion"] == 1500
        assert job.attempts == (2 if job_id in killed_in else 1), job_id


def test_sigterm_lets_the_batch_in_flight_finish(cluster: Cluster) -> None:
    worker = cluster.worker("g", concurrency=3, queue=GENERATE)
    ids = submit(cluster, 3, 600)
    wait_for(lambda: len(cluster.running_on(worker)) == 3, "the batch of three running", 60)
    worker.process.send_signal(signal.SIGTERM)  # what `docker stop` and systemd send
    assert worker.process.wait(timeout=120) == 0
    rows = cluster.rows(ids)
    assert all(job.status == "succeeded" and job.attempts == 1 for job in rows.values()), rows
    assert all(job.result and job.result["tokens"]["completion"] == 600 for job in rows.values())
