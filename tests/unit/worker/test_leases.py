"""A job's lease: one holder at a time, given up at the end, taken over from a dead process."""

from __future__ import annotations

import json
import socket
import subprocess

import fakeredis

from tests.support import wait_for
from worker import leases


def test_a_second_copy_cannot_take_a_held_job() -> None:
    client = fakeredis.FakeRedis()
    first = leases.take(client, "job-1", "a@host")
    assert first is not None
    with first:
        assert leases.holder(client, "job-1") == "a@host"
        assert leases.take(client, "job-1", "b@host") is None
    assert leases.holder(client, "job-1") is None
    assert leases.take(client, "job-1", "b@host") is not None


def test_a_lease_lapses_by_itself() -> None:
    client = fakeredis.FakeRedis()
    assert leases.take(client, "job-1", "a@host") is not None  # taken, never entered or released
    assert 0 < client.ttl("ladder:lease:job-1") <= leases.TTL


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over() -> None:
    client = fakeredis.FakeRedis()
    dead = {"worker": "a@host", "host": socket.gethostname(), "pid": _pid_of_exited()}
    client.set("ladder:lease:job-1", json.dumps(dead), ex=leases.TTL)
    assert leases.holder(client, "job-1") is None
    taken = leases.take(client, "job-1", "b@host")
    assert taken is not None
    with taken:
        assert leases.holder(client, "job-1") == "b@host"


def test_a_lease_held_on_another_host_is_respected() -> None:
    client = fakeredis.FakeRedis()
    other = {"worker": "a@elsewhere", "host": "elsewhere", "pid": 1}
    client.set("ladder:lease:job-1", json.dumps(other), ex=leases.TTL)
    assert leases.holder(client, "job-1") == "a@elsewhere"
    assert leases.take(client, "job-1", "b@host") is None


def test_releasing_never_removes_someone_elses_lease() -> None:
    client = fakeredis.FakeRedis()
    lease = leases.take(client, "job-1", "a@host")
    assert lease is not None
    with lease:
        other = {"worker": "b@elsewhere", "host": "elsewhere", "pid": 1}
        client.set("ladder:lease:job-1", json.dumps(other))  # as after a lapse and a takeover
    assert leases.holder(client, "job-1") == "b@elsewhere"


def _pid_of_exited() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_an_unreaped_dead_process_counts_as_dead() -> None:
    client = fakeredis.FakeRedis()
    process = subprocess.Popen(["true"])  # exits, and stays a zombie until waited for
    try:
        wait_for(lambda: leases._zombie(process.pid), "a zombie", 10)
        lease = {"worker": "a@host", "host": socket.gethostname(), "pid": process.pid}
        client.set("ladder:lease:job-1", json.dumps(lease), ex=leases.TTL)
        assert leases.holder(client, "job-1") is None
    finally:
        process.wait()
