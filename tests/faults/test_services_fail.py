"""Redis restarting empty, the API killed mid-burst, PostgreSQL gone for ten seconds: what a
client was promised (a 202) still happens, once, and the outage is a clean 503 meanwhile."""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any

from tests.processes import Cluster, in_background
from tests.support import SLOW, Reply, wait_for


def test_redis_restarting_empty_under_1000_waiting_jobs_loses_none(cluster: Cluster) -> None:
    worker = cluster.worker("a")
    blocker = cluster.client.submit({"n": 1_000_000, "steps": SLOW})["id"]
    wait_for(lambda: blocker in cluster.running_on(worker), "the blocker running", 30)
    replies = cluster.submit_many([{"n": n} for n in range(1000)])
    assert [r.status for r in replies] == [202] * 1000
    ids = [r.json()["id"] for r in replies]
    assert cluster.statuses()["queued"] == 1000, "the 1,000 must wait behind the blocker"

    cluster.redis.kill()
    cluster.redis.start()  # the same port, nothing in it
    # The worker reconnects by itself; its reconciler finds 1,000 jobs Redis never heard of.
    rows = cluster.wait_until_ended(1001, timeout=180)
    assert {str(job.status) for job in rows.values()} == {"succeeded"}
    assert all(job.attempts == 1 for job in rows.values())  # sent again, but none run twice
    assert [rows[job_id].result["value"] for job_id in ids[:5]] == ["1", "1", "2", "3", "5"]
    assert "reconciler: sent" in worker.log_text()


def test_every_job_that_got_a_202_runs_though_the_api_is_killed_mid_burst(
    cluster: Cluster,
) -> None:
    cluster.worker("a", concurrency=2)
    accepted: list[str] = []
    failed: list[str] = []
    stop = threading.Event()

    def client(number: int) -> None:
        while not stop.is_set():
            try:
                reply = cluster.client.call(
                    "POST", "/api/v1/jobs", {"kind": "stairs", "params": {"n": number}}
                )
            except (OSError, http.client.HTTPException) as exc:  # it died with the API
                failed.append(type(exc).__name__)
                time.sleep(0.05)
                continue
            if reply.status == 202:
                accepted.append(reply.json()["id"])
            else:
                failed.append(str(reply.status))

    threads = [in_background(client, number) for number in range(16)]
    wait_for(lambda: len(accepted) >= 200, "200 submissions", 60)
    cluster.api.kill()
    killed_at = len(accepted)
    time.sleep(1)  # the scenario: an outage the clients keep knocking on, not a wait for an event
    cluster.api.start()
    wait_for(lambda: len(accepted) >= killed_at + 200, "200 more submissions", 60)
    stop.set()
    for thread in threads:
        thread.join()

    assert failed, "the kill must have cut some requests short"
    assert all(f.isalpha() for f in failed), f"only connection errors, no 5xx: {set(failed)}"
    # Every row, the unanswered ones too (the reconciler sends those a few seconds later).
    rows = cluster.wait_until_ended(len(cluster.rows()), timeout=180)
    assert set(accepted) <= set(rows)
    assert all(rows[job_id].status == "succeeded" for job_id in accepted)
    # A request cut short may have committed its job without its client hearing: it runs too.
    assert all(job.status == "succeeded" for job in rows.values())


def test_postgresql_stopping_for_ten_seconds_is_a_clean_503_and_loses_no_job(
    cluster: Cluster,
) -> None:
    cluster.worker("a", concurrency=2)
    replies = cluster.submit_many([{"n": 200_000 + i, "steps": SLOW} for i in range(12)])
    ids = [r.json()["id"] for r in replies]
    wait_for(lambda: cluster.statuses()["running"] == 2, "two jobs running", 30)

    cluster.postgres.stop()
    stopped = time.monotonic()
    seen: list[tuple[str, Reply]] = []
    while time.monotonic() - stopped < 10:
        seen.append(("submit", _submit(cluster)))
        seen.append(("get", cluster.client.call("GET", f"/api/v1/jobs/{ids[0]}")))
        seen.append(("list", cluster.client.call("GET", "/api/v1/jobs")))
        seen.append(("readyz", cluster.client.call("GET", "/readyz")))
        time.sleep(0.5)  # a client's pace through the ten seconds of outage
    cluster.postgres.start()

    for what, reply in seen:
        assert reply.status == 503, (what, reply.status, reply.body[:300])
        assert reply.headers["Content-Type"] == "application/problem+json", what
        assert int(reply.headers["Retry-After"]) > 0, what
    assert "database" in seen[-1][1].json()["detail"]
    # Workers waited for the database to come back: every job ends, none left running.
    rows = cluster.wait_until_ended(12, timeout=120)
    assert sorted(rows) == sorted(ids)
    assert all(job.status == "succeeded" for job in rows.values())
    assert cluster.client.call("GET", "/readyz").status == 200
    assert _submit(cluster).status == 202


def _submit(cluster: Cluster) -> Reply:
    body: dict[str, Any] = {"kind": "stairs", "params": {"n": 5}}
    return cluster.client.call("POST", "/api/v1/jobs", body)
