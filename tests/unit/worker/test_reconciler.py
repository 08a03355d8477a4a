"""The reconciler's decisions, pass by pass, on SQLite and fakeredis: what it sends again (a job
Redis lost, a dead worker's job) and what it leaves alone (a job waiting, running, young or
finished). Its producer only records what it is asked to send."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.models import JobStatus, utcnow
from shared.producer import TASK_NAME, queue_lists, redis_priority
from tests.support import add_job
from worker import leases
from worker.app import LadderCelery
from worker.reconciler import UNACKED, UNACKED_INDEX, reconcile


class Producer:
    """Stands in for shared.producer.Producer: remembers each message it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, int]] = []

    def send(self, job_id: str, kind: str, queue: str, priority: int) -> None:
        self.sent.append((job_id, kind, queue, priority))


@pytest.fixture
def producer() -> Producer:
    return Producer()


def passes(app: LadderCelery, producer: Producer, count: int = 2) -> list[list[str]]:
    """Run `count` passes one after another, as the loop does; what each one sent."""
    suspects: set[str] = set()
    sent_each = []
    for _ in range(count):
        sent, suspects = reconcile(app.db, app.redis, producer, app.settings, suspects)  # type: ignore[arg-type]
        sent_each.append(sent)
    return sent_each


def long_ago(app: LadderCelery) -> datetime:
    """Just past `reconcile_after`: old enough for the reconciler to look at."""
    return utcnow() - timedelta(seconds=app.settings.reconcile_after + 1)


def message(job_id: str, priority: int = 5) -> dict[str, Any]:
    """A task message as kombu's Redis transport keeps it, the body left out."""
    return {
        "body": "", "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": TASK_NAME, "id": job_id},
        "properties": {"delivery_tag": f"tag-{job_id}", "priority": redis_priority(priority),
                       "delivery_info": {"exchange": "", "routing_key": "cpu"}},
    }  # fmt: skip


def wait_in_queue(app: LadderCelery, job_id: str, priority: int = 5) -> None:
    """Put the job's message where the transport queues one of this priority."""
    queued = json.dumps(message(job_id, priority))
    app.redis.lpush(queue_lists("cpu")[redis_priority(priority)], queued)


def take_unacked(app: LadderCelery, job_id: str, at: datetime | None = None) -> str:
    """Hold the job's message as a worker holds one it has not acknowledged (kombu keeps
    [message, exchange, routing key] by delivery tag, and when it was taken: long ago unless
    `at` says); its tag."""
    tag = f"tag-{job_id}"
    app.redis.hset(UNACKED, tag, json.dumps([message(job_id), "", "cpu"]))
    app.redis.zadd(UNACKED_INDEX, {tag: (at or long_ago(app)).timestamp()})
    return tag


def test_a_queued_job_redis_lost_is_sent_on_the_second_pass_that_sees_it(
    app: LadderCelery, producer: Producer
) -> None:
    # Given a job queued for longer than reconcile_after, its message nowhere in Redis
    job_id = add_job(app.db, created_at=long_ago(app), priority=7)
    # When the reconciler passes once, it only suspects it (a message moving from a queue to a
    # worker is briefly in neither place)
    sent, suspects = reconcile(app.db, app.redis, producer, app.settings, set())  # type: ignore[arg-type]
    assert sent == [] and suspects == {job_id} and producer.sent == []
    # When it passes again, the job is sent, once, as it was first sent
    sent, suspects = reconcile(app.db, app.redis, producer, app.settings, suspects)  # type: ignore[arg-type]
    assert sent == [job_id] and suspects == set()
    assert producer.sent == [(job_id, "stairs", "cpu", 7)]


@pytest.mark.parametrize("priority", [0, 5, 9])
def test_a_queued_job_whose_message_waits_in_a_queue_is_not_sent(
    app: LadderCelery, producer: Producer, priority: int
) -> None:
    job_id = add_job(app.db, created_at=long_ago(app), priority=priority)
    wait_in_queue(app, job_id, priority)
    assert passes(app, producer, 3) == [[], [], []]
    assert producer.sent == []


def test_a_queued_job_a_worker_has_just_taken_is_not_sent(
    app: LadderCelery, producer: Producer
) -> None:
    # Taken a moment ago, not yet claimed: the message is unacked, the row still queued.
    job_id = add_job(app.db, created_at=long_ago(app))
    take_unacked(app, job_id, at=utcnow())
    assert passes(app, producer, 3) == [[], [], []]


def test_a_queued_job_being_claimed_is_not_sent(app: LadderCelery, producer: Producer) -> None:
    # Taken long ago but its lease is held: a worker is claiming it right now.
    job_id = add_job(app.db, created_at=long_ago(app))
    take_unacked(app, job_id)
    assert leases.take(app.redis, job_id, "cpu-4@host") is not None
    assert passes(app, producer, 3) == [[], [], []]


def test_a_queued_job_a_dead_worker_took_is_sent_and_its_message_dropped(
    app: LadderCelery, producer: Producer
) -> None:
    # Given a message a worker took long ago and never claimed (it died in between)
    job_id = add_job(app.db, created_at=long_ago(app))
    tag = take_unacked(app, job_id)
    # When the reconciler has seen it lost twice, it sends the job again, once
    assert passes(app, producer, 3) == [[], [job_id], []]
    assert producer.sent == [(job_id, "stairs", "cpu", 5)]
    # and the dead worker's copy is gone, so that Redis cannot restore it later
    assert not app.redis.hexists(UNACKED, tag) and app.redis.zscore(UNACKED_INDEX, tag) is None


def test_a_job_whose_message_turns_up_between_passes_is_not_sent(
    app: LadderCelery, producer: Producer
) -> None:
    job_id = add_job(app.db, created_at=long_ago(app))
    sent, suspects = reconcile(app.db, app.redis, producer, app.settings, set())  # type: ignore[arg-type]
    assert sent == [] and suspects == {job_id}
    wait_in_queue(app, job_id)  # it was on its way
    sent, suspects = reconcile(app.db, app.redis, producer, app.settings, suspects)  # type: ignore[arg-type]
    assert sent == [] and suspects == set() and producer.sent == []


def test_a_running_job_whose_lease_is_held_is_not_sent(
    app: LadderCelery, producer: Producer
) -> None:
    # Given a job running for longer than reconcile_after on a live worker
    job_id = add_job(app.db, status=JobStatus.RUNNING, attempts=1, worker="cpu-2@host",
                     started_at=long_ago(app))  # fmt: skip
    assert leases.take(app.redis, job_id, "cpu-2@host") is not None
    tag = take_unacked(app, job_id)
    # Then no pass sends it, nor touches the message that worker holds
    assert passes(app, producer, 3) == [[], [], []]
    assert app.redis.hexists(UNACKED, tag) and app.redis.zscore(UNACKED_INDEX, tag) is not None


def test_a_running_job_whose_lease_lapsed_is_sent_and_its_old_message_dropped(
    app: LadderCelery, producer: Producer
) -> None:
    # Given a job whose worker died mid-run (its lease lapsed), its message still unacked, and
    # beside it another worker's healthy job
    lost = add_job(app.db, status=JobStatus.RUNNING, attempts=1, worker="cpu-2@gone",
                   started_at=long_ago(app))  # fmt: skip
    lost_tag = take_unacked(app, lost)
    healthy = add_job(app.db, status=JobStatus.RUNNING, attempts=1, worker="cpu-3@host",
                      started_at=long_ago(app))  # fmt: skip
    assert leases.take(app.redis, healthy, "cpu-3@host") is not None
    healthy_tag = take_unacked(app, healthy)
    # When the reconciler has seen it twice
    assert passes(app, producer) == [[], [lost]]
    # Then the job is sent again, and the dead worker's copy cannot come back as well
    assert producer.sent == [(lost, "stairs", "cpu", 5)]
    assert not app.redis.hexists(UNACKED, lost_tag)
    assert app.redis.zscore(UNACKED_INDEX, lost_tag) is None
    assert app.redis.hexists(UNACKED, healthy_tag)
    assert app.redis.zscore(UNACKED_INDEX, healthy_tag) is not None


def test_young_jobs_are_left_alone(app: LadderCelery, producer: Producer) -> None:
    # Newer than reconcile_after: a job just submitted, and one just started (no lease yet)
    add_job(app.db, created_at=utcnow())
    add_job(app.db, status=JobStatus.RUNNING, attempts=1, worker="cpu-2@host",
            created_at=long_ago(app), started_at=utcnow())  # fmt: skip
    suspects: set[str] = set()
    for _ in range(3):
        sent, suspects = reconcile(app.db, app.redis, producer, app.settings, suspects)  # type: ignore[arg-type]
        assert sent == [] and suspects == set()
    assert producer.sent == []


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_finished_jobs_are_never_sent(
    app: LadderCelery, producer: Producer, status: JobStatus
) -> None:
    # Long finished, no message and no lease anywhere: nothing to do
    then = long_ago(app)
    add_job(app.db, status=status, attempts=1, worker="cpu-2@gone", created_at=then,
            started_at=then, finished_at=then)  # fmt: skip
    suspects: set[str] = set()
    for _ in range(3):
        sent, suspects = reconcile(app.db, app.redis, producer, app.settings, suspects)  # type: ignore[arg-type]
        assert sent == [] and suspects == set()
    assert producer.sent == []
