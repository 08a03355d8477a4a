"""Load: 10,000 jobs from 16 concurrent clients lose none, run none twice, and never see a 5xx.
The figures come from `bench/load.py`, whose timed driver sends the same burst."""

from __future__ import annotations

from api.auth import create_key
from tests.processes import Cluster
from tests.support import drive

JOBS = 10_000


def test_10000_jobs_from_16_clients_all_run_once(cluster: Cluster) -> None:
    cluster.worker("a", concurrency=2)
    tokens = [create_key(cluster.db, f"client-{i}") for i in range(16)]
    seen = drive(cluster.api.url, tokens, JOBS)
    assert dict(seen.statuses) == {202: JOBS}
    assert len(set(seen.accepted)) == JOBS
    rows = cluster.wait_until_ended(JOBS, timeout=600)
    assert sorted(rows) == sorted(seen.accepted)
    assert all(job.status == "succeeded" and job.attempts == 1 for job in rows.values())
    assert all(job.result["value"] for job in rows.values())
