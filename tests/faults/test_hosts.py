"""Ladder on several hosts, each a network namespace with an address and hostname of its own:
`data` (Redis, PostgreSQL), `api` (gunicorn), `w1` and `w2` (CPU workers), `w3` joining late."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.db import Database
from shared.schema import upgrade
from tests.faults.network import Network, why_not
from tests.processes import ApiServer, Cluster, PostgresServer, RedisServer
from tests.support import ADMIN_TOKEN, SECRET_KEY, SLOW, Client, need, wait_for


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Network, Cluster]]:
    if reason := why_not():
        need("network namespaces", reason)
    network = Network()
    postgres: PostgresServer | None = None
    cluster: Cluster | None = None
    try:
        data = network.add("data")
        postgres = PostgresServer(data)
        postgres.start()
        redis = RedisServer(tmp_path / "redis.log", data)
        redis.start()
        database_url = postgres.create_database(f"hosts_{uuid.uuid4().hex[:8]}")
        upgrade(database_url)
        settings = Settings(database_url=database_url, broker_url=redis.url,
                            admin_token=ADMIN_TOKEN, secret_key=SECRET_KEY,
                            models_dir=tmp_path / "models")  # fmt: skip
        api = ApiServer(settings, tmp_path / "api.log", network.add("api"))
        cluster = Cluster(settings, tmp_path, postgres, redis, api, Client(api.url, ADMIN_TOKEN),
                          Database(database_url))  # fmt: skip
        api.start()
        yield network, cluster
    finally:
        if cluster is not None:
            cluster.stop()
        if postgres is not None:
            postgres.remove()
        network.remove()


def test_jobs_spread_over_worker_hosts_and_survive_one_cut_off(
    hosts: tuple[Network, Cluster],
) -> None:
    network, cluster = hosts
    cluster.worker("w1", host=network.add("w1"))
    w2 = cluster.worker("w2", host=network.add("w2"))
    replies = cluster.submit_many([{"n": 150_000 + i, "steps": SLOW} for i in range(40)])
    ids = [r.json()["id"] for r in replies]
    rows = cluster.wait_until_ended(40, timeout=120)
    assert {rows[i].worker for i in ids} == {"w1@w1", "w2@w2"}  # both hosts, by their names
    assert {w["hostname"] for w in _workers(cluster)} >= {"w1", "w2"}

    # w2 loses its network in the middle of a job.
    more = cluster.submit_many([{"n": 300_000 + i, "steps": SLOW} for i in range(20)])
    wait_for(lambda: bool(cluster.running_on(w2)), "a job running on w2", 60)
    network.cut("w2")
    stranded = cluster.running_on(w2)
    assert stranded
    rows = cluster.wait_until_ended(60, timeout=180)
    assert all(rows[r.json()["id"]].status == "succeeded" for r in more)
    for job_id in stranded:  # w2 never finished them: w1 did, once its lease lapsed
        assert rows[job_id].worker == "w1@w1" and rows[job_id].attempts == 2
    wait_for(lambda: _state(cluster, "w2@w2") == "offline", "w2 shown offline", 30)

    # A host that joins later takes jobs within seconds.
    cluster.worker("w3", host=network.add("w3"))
    wait_for(lambda: _state(cluster, "w3@w3") == "online", "w3 shown online", 10)
    late = cluster.submit_many([{"n": 100_000 + i, "steps": SLOW} for i in range(10)])
    rows = cluster.wait_until_ended(70, timeout=60)
    assert "w3@w3" in {rows[r.json()["id"]].worker for r in late}


def _workers(cluster: Cluster) -> list[dict[str, object]]:
    """The workers as the API lists them, checked against the dashboard's own feed. A worker
    that joins or goes offline between the two reads makes them differ: read both again."""
    for _ in range(20):
        lists = []
        for path in ("/api/v1/workers", "/admin/api/workers"):
            reply = cluster.client.call("GET", path)
            assert reply.status == 200, path
            lists.append(reply.json()["items"])
        api, dashboard = ({(w["name"], w["state"]) for w in items} for items in lists)
        if api == dashboard:
            break
        time.sleep(0.1)
    assert api == dashboard
    items: list[dict[str, object]] = lists[0]
    return items


def _state(cluster: Cluster, name: str) -> str | None:
    return next((str(w["state"]) for w in _workers(cluster) if w["name"] == name), None)
