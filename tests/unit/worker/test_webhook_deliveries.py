"""Webhook deliveries on SQLite, with a receiver on 127.0.0.1: made when a job ends however it
ends, taken once, signed, retried on the schedule, given up after the window, deleted with a
purged job; and the HTTP side: the address checked is the address called, no redirect is
followed, a slow receiver is cut off."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timedelta

import fakeredis
import pytest
from sqlalchemy import func, select, update

from shared import deliveries, jobs, webhooks
from shared.config import Settings
from shared.db import Database
from shared.models import ApiKey, Job, JobStatus, WebhookDelivery, utcnow
from shared.representation import job_brief
from shared.retention import purge
from tests.support import Receiver, add_job, wait_for
from worker import webhooks as sender
from worker.webhooks import attempt, post

HOOK = "https://hooks.example.com/ladder"


def running(db: Database, url: str | None = HOOK) -> str:
    return add_job(db, status=JobStatus.RUNNING, attempts=1, started_at=utcnow(), callback_url=url)


def all_deliveries(db: Database) -> list[WebhookDelivery]:
    with db.session() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def take(db: Database, hold: float = 60) -> deliveries.Due:
    (due,) = deliveries.take_due(db, utcnow(), 10, hold)
    return due


def secret_of(db: Database, job_id: str) -> str:
    with db.session() as session:
        return str(
            session.scalar(
                select(ApiKey.webhook_secret).join(Job, Job.api_key_id == ApiKey.id)
                .where(Job.id == job_id)
            )
        )  # fmt: skip


@pytest.mark.parametrize(
    ("end", "status"),
    [
        (lambda db, i: jobs.finish(db, i, 1, JobStatus.SUCCEEDED, result={"value": "21"},
                                   summary="21"), "succeeded"),
        (lambda db, i: jobs.finish(db, i, 1, JobStatus.FAILED, error=jobs.error("x", "y")),
         "failed"),
        (jobs.cancel, "cancelled"),
        (lambda db, i: jobs.give_up(db, i, 1), "failed"),
        (lambda db, i: jobs.fail_running(db, i, jobs.error("timeout", "too slow")), "failed"),
    ],
)  # fmt: skip
def test_each_way_a_job_ends_makes_one_delivery_of_its_brief(
    db: Database, end: object, status: str
) -> None:
    job_id = running(db)
    assert end(db, job_id)  # type: ignore[operator]
    assert not end(db, job_id)  # type: ignore[operator]  # ended already: no second delivery
    (made,) = all_deliveries(db)
    assert (made.job_id, made.url, made.state, made.attempts) == (job_id, HOOK, "pending", [])
    with db.session() as session:
        job = session.scalars(select(Job).where(Job.id == job_id)).one()
    assert json.loads(made.body) == json.loads(json.dumps(job_brief(job)))
    assert json.loads(made.body)["status"] == status


def test_a_job_without_a_callback_makes_none(db: Database) -> None:
    job_id = running(db, url=None)
    assert jobs.finish(db, job_id, 1, JobStatus.SUCCEEDED, result={})
    assert all_deliveries(db) == []


def test_a_due_delivery_is_taken_once_until_its_hold_lapses(db: Database) -> None:
    job_id = running(db)
    jobs.cancel(db, job_id)
    due = take(db, hold=60)
    assert due.job_id == job_id and due.url == HOOK and due.secret.startswith("whsec_")
    assert deliveries.take_due(db, utcnow(), 10, 60) == []  # another worker finds nothing
    later = utcnow() + timedelta(seconds=61)  # the taker died mid-attempt
    assert [d.id for d in deliveries.take_due(db, later, 10, 60)] == [due.id]


def test_a_delivered_attempt_is_signed_with_the_keys_secret(db: Database) -> None:
    job_id = running(db)
    jobs.cancel(db, job_id)
    sent: list[tuple[webhooks.Target, bool, bytes, dict[str, str]]] = []

    def send(target: webhooks.Target, allow: bool, body: bytes, headers: dict[str, str]) -> int:
        sent.append((target, allow, body, headers))
        return 204

    settings = Settings(database_url=db.url)
    made = attempt(db, settings, take(db), send)
    assert made["status"] == 204 and made["error"] is None and made["duration_ms"] >= 0
    ((target, allow, body, headers),) = sent
    assert (target.host, target.path, allow) == ("hooks.example.com", "/ladder", False)
    (delivery,) = all_deliveries(db)
    assert headers["Ladder-Delivery"] == str(delivery.id)
    signature = headers["Ladder-Signature"]
    assert webhooks.verify(secret_of(db, job_id), signature, str(delivery.id), body)
    assert not webhooks.verify(secret_of(db, job_id), signature, str(delivery.id + 1), body)
    assert headers["Content-Type"] == "application/json"
    assert delivery.state == "delivered" and delivery.next_attempt_at is None
    assert delivery.attempts == [made]
    assert deliveries.take_due(db, utcnow() + timedelta(days=2), 10, 60) == []


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        (500, "HTTP 500"),
        (302, "HTTP 302 (redirects are not followed)"),
        (webhooks.RefusedTarget("resolves to a non-public address"),
         "refused: the URL resolves to a non-public address"),
        (ConnectionRefusedError(111, "Connection refused"), "ConnectionRefusedError"),
        (TimeoutError("timed out"), "TimeoutError: timed out"),
    ],
)  # fmt: skip
def test_a_failed_attempt_is_recorded_and_tried_again_later(
    db: Database, outcome: int | Exception, error: str
) -> None:
    jobs.cancel(db, running(db))

    def send(*_: object) -> int:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    settings = Settings(database_url=db.url, webhook_first_retry=30)
    before = utcnow()
    made = attempt(db, settings, take(db), send)
    assert made["error"].startswith(error)
    assert made["status"] == (outcome if isinstance(outcome, int) else None)
    (delivery,) = all_deliveries(db)
    assert delivery.state == "pending" and delivery.attempts == [made]
    wait = delivery.next_attempt_at.replace(tzinfo=before.tzinfo) - before  # type: ignore[union-attr]
    assert timedelta(seconds=30) <= wait < timedelta(seconds=31)


def test_retries_back_off_then_give_up_after_the_window(db: Database) -> None:
    jobs.cancel(db, running(db))
    settings = Settings(database_url=db.url, webhook_first_retry=30, webhook_retry_for=200)
    waits = []
    for _ in range(10):
        due = deliveries.take_due(db, utcnow() + timedelta(days=1), 10, 60)
        if not due:
            break
        made = attempt(db, settings, due[0], lambda *_: 503)
        (delivery,) = all_deliveries(db)
        if delivery.next_attempt_at is not None:
            at = datetime.fromisoformat(made["at"]).replace(tzinfo=None)
            wait = round((delivery.next_attempt_at.replace(tzinfo=None) - at).total_seconds())
            waits.append(wait)
            # The wait passes: the job ended that much longer ago.
            earlier = delivery.created_at - timedelta(seconds=wait)
            with db.session() as session:
                session.execute(update(WebhookDelivery).values(created_at=earlier))
    (delivery,) = all_deliveries(db)
    # 30, 60, then 120 more would pass 200 s after the job ended: given up at the third.
    assert waits == [30, 60]
    assert delivery.state == "failed" and len(delivery.attempts) == 3
    assert delivery.next_attempt_at is None


def test_a_purged_job_takes_its_deliveries_with_it(db: Database, settings: Settings) -> None:
    old = add_job(db, status=JobStatus.RUNNING, attempts=1, callback_url=HOOK)
    jobs.cancel(db, old)
    with db.session() as session:
        session.execute(
            update(Job).where(Job.id == old).values(finished_at=utcnow() - timedelta(days=8))
        )
    kept = running(db)
    jobs.cancel(db, kept)
    assert purge(db, fakeredis.FakeRedis(), settings, utcnow())["cancelled"] == 1
    assert [d.job_id for d in all_deliveries(db)] == [kept]


def test_post_goes_to_the_address_it_checked_with_the_hosts_name() -> None:
    with Receiver() as receiver:
        target = webhooks.parse(f"http://hooks.test:{receiver.port}/in?x=1")
        # The name is looked up by the resolver given, never the system's.
        status = post(target, True, b"{}", {"X-Test": "1"}, lambda host, port: ["127.0.0.1"])
        assert status == 200
        (got,) = receiver.got
        assert got.path == "/in?x=1" and got.body == b"{}"
        assert got.headers["Host"] == f"hooks.test:{receiver.port}"


def test_post_refuses_a_name_that_now_resolves_to_a_private_address() -> None:
    """DNS rebinding: public at submit, private at delivery. Nothing is connected to."""
    with Receiver() as receiver:
        target = webhooks.parse(f"http://rebind.test:{receiver.port}/hook")
        with pytest.raises(webhooks.RefusedTarget, match="resolves to a non-public address"):
            post(target, False, b"{}", {}, lambda host, port: ["127.0.0.1"])
        with pytest.raises(webhooks.RefusedTarget, match="non-public"):
            post(target, True, b"{}", {}, lambda host, port: ["169.254.169.254"])
        assert receiver.got == []


def test_post_follows_no_redirect() -> None:
    with Receiver([(307, {"Location": "/elsewhere"})]) as receiver:
        target = webhooks.parse(receiver.url("/hook"))
        assert post(target, True, b"{}", {}) == 307
        assert [got.path for got in receiver.got] == ["/hook"]


def test_a_receiver_that_never_answers_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender, "DEADLINE_SECONDS", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = webhooks.parse(f"http://127.0.0.1:{silent.getsockname()[1]}/hook")
        started = time.monotonic()
        with pytest.raises(OSError):
            post(target, True, b"{}", {})
        assert time.monotonic() - started < 5


def test_a_closed_port_is_an_error_not_a_hang() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        post(webhooks.parse(f"http://127.0.0.1:{port}/"), True, b"{}", {})


def test_the_sender_delivers_what_is_due_on_its_threads(db: Database) -> None:
    for _ in range(6):
        jobs.cancel(db, running(db))
    hits: list[str] = []
    lock = threading.Lock()

    def send(target: webhooks.Target, *_: object) -> int:
        with lock:
            hits.append(target.host)
        return 200

    settings = Settings(database_url=db.url)
    loop = sender.Sender(db, settings, send)
    try:
        # SENDERS at a time: the first pass takes four, the next what is left.
        wait_for(lambda: loop.run_once() == 0 and len(hits) == 6, "six deliveries", 10)
    finally:
        loop.close()
    with db.session() as session:
        states = session.execute(
            select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
        ).all()
    assert dict(states) == {"delivered": 6}


def test_only_the_worker_still_holding_a_delivery_records_its_attempt(db: Database) -> None:
    """A worker that stalled past its hold, while another took the delivery, writes nothing."""
    jobs.cancel(db, running(db))
    stalled = take(db, hold=60)
    (holder,) = deliveries.take_due(db, utcnow() + timedelta(seconds=61), 10, 60)
    assert holder.id == stalled.id and holder.held_until > stalled.held_until
    late = {"at": "2026-01-01T00:00:00Z", "status": 200, "error": None, "duration_ms": 1.0}
    assert not deliveries.record(db, stalled, late, deliveries.DELIVERED, None)
    (delivery,) = all_deliveries(db)
    assert (delivery.state, delivery.attempts) == ("pending", [])
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at.replace(tzinfo=None) == holder.held_until.replace(tzinfo=None)
    made = {**late, "status": 503, "error": "HTTP 503"}
    retry_at = utcnow() + timedelta(seconds=30)
    assert deliveries.record(db, holder, made, deliveries.PENDING, retry_at)
    (delivery,) = all_deliveries(db)
    assert delivery.attempts == [made]
    # Recorded once: the holder's second write (a bug) finds its hold gone too.
    assert not deliveries.record(db, holder, late, deliveries.DELIVERED, None)


def test_an_attempt_whose_hold_lapsed_is_not_recorded(db: Database) -> None:
    jobs.cancel(db, running(db))
    stalled = take(db, hold=60)
    (holder,) = deliveries.take_due(db, utcnow() + timedelta(seconds=61), 10, 60)
    settings = Settings(database_url=db.url)
    attempt(db, settings, stalled, lambda *_: 200)
    (delivery,) = all_deliveries(db)
    assert (delivery.state, delivery.attempts) == ("pending", [])
    made = attempt(db, settings, holder, lambda *_: 200)
    (delivery,) = all_deliveries(db)
    assert (delivery.state, delivery.attempts) == ("delivered", [made])


def test_a_retried_jobs_pending_delivery_of_its_failure_is_superseded(db: Database) -> None:
    """The receiver is told of the new run's end, and never afterwards of the failed run's."""
    job_id = running(db)
    assert jobs.finish(db, job_id, 1, JobStatus.FAILED, error=jobs.error("x", "y"))
    settings = Settings(database_url=db.url, webhook_first_retry=30)
    attempt(db, settings, take(db), lambda *_: 503)  # the receiver is down: tried again later
    assert jobs.retry(db, job_id)
    (old,) = all_deliveries(db)
    assert (old.state, old.next_attempt_at, len(old.attempts)) == ("superseded", None, 1)
    assert deliveries.take_due(db, utcnow() + timedelta(days=1), 10, 60) == []
    # While the new run is queued or running, the job's webhook is about it: nothing yet.
    assert deliveries.latest(db, job_id) is None
    claim = jobs.claim(db, job_id, "w1", 3)
    assert claim is not None
    assert jobs.finish(db, job_id, claim.attempt, JobStatus.SUCCEEDED, result={}, summary="ok")
    (due,) = deliveries.take_due(db, utcnow() + timedelta(seconds=1), 10, 60)
    assert due.id != old.id and json.loads(due.body)["status"] == "succeeded"
    latest = deliveries.latest(db, job_id)
    assert latest is not None and latest.id == due.id


def test_an_attempt_in_flight_when_its_job_is_retried_is_not_recorded(db: Database) -> None:
    job_id = running(db)
    assert jobs.finish(db, job_id, 1, JobStatus.FAILED, error=jobs.error("x", "y"))
    in_flight = take(db)
    assert jobs.retry(db, job_id)
    made = attempt(db, Settings(database_url=db.url), in_flight, lambda *_: 503)
    (old,) = all_deliveries(db)
    assert (old.state, old.attempts, old.next_attempt_at) == ("superseded", [], None)
    assert made["error"] == "HTTP 503"


class Dripper:
    """A hostile receiver on 127.0.0.1: it reads what a client sends first, then answers one
    byte every `every` seconds for `lasting` seconds: a TLS record that never completes
    (`tls`), or an HTTP response whose headers never end. It counts its open connections."""

    def __init__(self, tls: bool, every: float = 0.1, lasting: float = 6.0) -> None:
        self.tls, self.every, self.lasting = tls, every, lasting
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open = self.most_open = self.connections = 0
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.connections += 1
            self.most_open = max(self.most_open, self.open)
        try:
            conn.settimeout(2)
            conn.recv(65536)  # the ClientHello, or the request
            # A handshake record announcing 16 KiB; a status line and a header without end.
            head = b"\x16\x03\x03\x40\x00" if self.tls else b"HTTP/1.1 200 OK\r\nX-Slow: "
            end = time.monotonic() + self.lasting
            for byte in head + b"a" * 100_000:
                if self.stop.is_set() or time.monotonic() > end:
                    break
                conn.sendall(bytes([byte]))
                time.sleep(self.every)
        except OSError:
            pass  # the client cut it off
        finally:
            with self.lock:
                self.open -= 1
            conn.close()

    def __enter__(self) -> Dripper:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.listener.close()


@pytest.mark.parametrize("tls", [True, False], ids=["during-the-tls-handshake", "in-the-response"])
def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    monkeypatch.setattr(sender, "DEADLINE_SECONDS", 1.0)
    with Dripper(tls) as dripper:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="within 1 s"):
            post(webhooks.parse(dripper.url()), True, b"{}", {})
        took = time.monotonic() - started
        assert 0.9 < took < 2.5, took
        wait_for(lambda: dripper.open == 0, "the connection shut", 3)


def test_a_slow_name_lookup_counts_against_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender, "DEADLINE_SECONDS", 0.5)
    answered = threading.Event()

    def slow(host: str, port: int) -> list[str]:
        answered.wait(5)  # a resolver taking its time
        return ["127.0.0.1"]

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"within 0\.5 s"):
        post(webhooks.parse("http://slow.test:9/hook"), True, b"{}", {}, slow)
    assert time.monotonic() - started < 1.5
    answered.set()


def test_at_most_two_addresses_of_a_name_are_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed: each address refuses at once
    tried: list[str] = []
    connect = socket.create_connection

    def counting(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        tried.append(address[0])
        return connect(address, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "create_connection", counting)
    many = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    with pytest.raises(ConnectionRefusedError):
        post(webhooks.parse(f"http://many.test:{port}/"), True, b"{}", {}, lambda h, p: many)
    assert tried == ["127.0.0.2", "127.0.0.3"]


def test_the_deadline_is_well_inside_the_hold() -> None:
    # The longest an attempt may take, however it goes: within the deadline, and so the hold.
    assert sender.MAX_ADDRESSES * sender.CONNECT_SECONDS <= sender.DEADLINE_SECONDS
    assert sender.HOLD_SECONDS >= sender.DEADLINE_SECONDS + 60


def test_two_workers_never_send_one_delivery_at_once_to_a_dripping_receiver(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attempt is cut off at the deadline, before the hold lapses and another worker may
    take the delivery: the receiver never has two connections for it open at once."""
    monkeypatch.setattr(sender, "DEADLINE_SECONDS", 0.5)
    monkeypatch.setattr(sender, "HOLD_SECONDS", 1.5)
    settings = Settings(database_url=db.url, webhook_allow_private=True, webhook_first_retry=1)
    with Dripper(tls=True, every=0.05) as dripper:
        jobs.cancel(db, running(db, url=dripper.url()))
        workers = [sender.Sender(db, settings), sender.Sender(db, settings)]
        try:
            end = time.monotonic() + 4
            while time.monotonic() < end:
                for worker in workers:
                    worker.run_once()
                time.sleep(0.05)
        finally:
            for worker in workers:
                worker.close()
        assert dripper.connections >= 2  # tried again after each cut
        assert dripper.most_open == 1


def test_a_key_made_without_a_secret_gets_one_when_its_webhook_is_signed(db: Database) -> None:
    """The release before webhooks makes keys with none while this one rolls out."""
    job_id = running(db)
    jobs.cancel(db, job_id)
    with db.session() as session:
        session.execute(update(ApiKey).values(webhook_secret=None))
    due = take(db)
    assert due.secret.startswith("whsec_") and due.secret == secret_of(db, job_id)
