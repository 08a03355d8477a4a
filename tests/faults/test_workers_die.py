"""Workers killed mid-job, stopped politely, or outlived by their own messages: every job still
ends once, with its attempts counted in the row."""

from __future__ import annotations

import signal
import time
from collections import Counter

import gmpy2

from shared import streams
from tests.processes import Cluster
from tests.support import SLOW, wait_for, wait_for_reconciler_passes
from worker.kinds.stairs import ways


def test_a_worker_killed_twice_during_100_jobs_loses_none(cluster: Cluster) -> None:
    cluster.worker("a")
    cluster.worker("b")
    replies = cluster.submit_many([{"n": 200_000 + i, "steps": SLOW} for i in range(100)])
    assert [r.status for r in replies] == [202] * 100
    ids = [r.json()["id"] for r in replies]
    interrupted: set[tuple[str, int]] = set()  # (job, attempt) pairs a kill cut short
    for done_before_kill in (15, 50):
        cluster.wait_until_ended(done_before_kill, timeout=120)
        victim = next(w for w in cluster.workers if w.name == "a" and w.process.poll() is None)
        wait_for(lambda w=victim: bool(cluster.running_on(w)), "a job running on a", 30)
        victim.kill()
        # Nothing can change a dead worker's rows: these are the jobs it died in the middle of.
        killed_in = cluster.running_on(victim)
        assert killed_in
        rows = cluster.rows(list(killed_in))
        interrupted |= {(job_id, rows[job_id].attempts) for job_id in killed_in}
        cluster.worker("a")  # the same name, as a restarted host would have

    rows = cluster.wait_until_ended(100, timeout=240)
    assert sorted(rows) == sorted(ids)
    assert {str(job.status) for job in rows.values()} == {"succeeded"}
    cut_short = Counter(job_id for job_id, _ in interrupted)
    for job_id, job in rows.items():
        assert job.attempts == 1 + cut_short[job_id], job_id
    for job_id in cut_short:  # the interrupted ones have the right answer all the same
        job = rows[job_id]
        assert job.result is not None
        modulus = 1_000_000_007
        assert gmpy2.mpz(job.result["value"]) % modulus == ways(job.params["n"], SLOW, modulus)


def test_a_job_whose_worker_dies_three_times_fails_as_worker_lost(cluster: Cluster) -> None:
    job_id = cluster.client.submit({"n": 1_000_000, "steps": SLOW})["id"]
    for attempt in (1, 2, 3):
        worker = cluster.worker("a")
        wait_for(
            lambda a=attempt, w=worker: (
                cluster.rows([job_id])[job_id].attempts == a and job_id in cluster.running_on(w)
            ),
            f"attempt {attempt} running",
            60,
        )
        worker.kill()
    cluster.worker("a")
    job = cluster.client.wait(job_id, timeout=60)
    assert job["status"] == "failed" and job["attempts"] == 3
    assert job["error"]["code"] == "worker_lost"
    # Two whole reconciler passes later, nothing has sent it again or changed it.
    sent_before = _sends_of(cluster, job_id)
    wait_for_reconciler_passes(streams.connect(cluster.settings.broker_url), 2, 30)
    assert _sends_of(cluster, job_id) == sent_before
    assert cluster.client.job(job_id) == job


def _sends_of(cluster: Cluster, job_id: str) -> int:
    """How many times a reconciler has said it sent this job again."""
    return sum(job_id in line for line in cluster.logs().splitlines() if "reconciler: sent" in line)


def test_a_job_outliving_the_visibility_timeout_runs_once(cluster: Cluster) -> None:
    # Redis hands an unacknowledged message out again after 3 s; the job takes about seven.
    first = cluster.worker("a", concurrency=2, LADDER_REDELIVERY_AFTER="3")
    job_id = cluster.client.submit({"n": 1_000_000, "steps": SLOW})["id"]
    wait_for(lambda: job_id in cluster.running_on(first), "the job running", 30)
    # The scenario itself, not a wait for an event: let the visibility timeout lapse while the
    # job runs, so that the next worker to start finds the message overdue.
    time.sleep(4)
    # A worker starting up restores messages past their visibility timeout to the queue.
    cluster.worker("b", LADDER_REDELIVERY_AFTER="3")
    job = cluster.client.wait(job_id, timeout=60)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    assert f"job {job_id} is running on a@" in cluster.logs()  # the second copy came, and went


def test_sigterm_lets_the_running_job_finish_and_puts_the_rest_back(cluster: Cluster) -> None:
    worker = cluster.worker("a")
    ids = [cluster.client.submit({"n": 400_000 + i, "steps": SLOW})["id"] for i in range(3)]
    wait_for(lambda: bool(cluster.running_on(worker)), "a job running", 30)
    (running,) = cluster.running_on(worker)
    worker.process.send_signal(signal.SIGTERM)  # what `docker stop` and systemd send
    assert worker.process.wait(timeout=60) == 0
    rows = cluster.rows(ids)
    assert rows[running].status == "succeeded" and rows[running].attempts == 1
    assert rows[running].finished_at is not None
    assert all(rows[i].status == "queued" and rows[i].attempts == 0 for i in ids if i != running)
    cluster.worker("b")
    rows = cluster.wait_until_ended(3, timeout=60)
    assert all(job.status == "succeeded" and job.attempts == 1 for job in rows.values())
