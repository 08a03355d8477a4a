"""Webhook deliveries: every worker's main process takes due deliveries from the database and
POSTs them, a few at a time, on threads of its own.

The schedule lives in the database (shared.deliveries), not in Celery: a retry an hour away
would outlast Redis' visibility timeout as an ETA task, and a Redis restarted empty would lose
it. Each attempt resolves the host again, checks every address it gets (shared.webhooks), and
connects to an address it checked, so that a name that now resolves to a private address (DNS
rebinding) reaches nothing. Redirects are not followed (a 3xx is a failed attempt).

One deadline bounds the whole attempt, from before the name is resolved to the end of the
response's headers: resolving, each connect, the TLS handshake, writing the request, reading
the answer, however slowly a receiver drips its bytes. It is well inside the hold a worker
takes on a delivery (HOLD_SECONDS), so that the attempt is over, its socket shut, before any
other worker can take the delivery: no receiver, however slow or hostile, gets one delivery
from two workers at once.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from celery.signals import worker_ready, worker_shutdown

from shared import deliveries, webhooks
from shared.config import Settings
from shared.db import Database
from shared.models import timestamp, utcnow
from worker.app import LadderCelery

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0
"""The longest wait for one address to accept the connection."""
READ_SECONDS = 10.0
"""The longest wait for the receiver's next bytes once connected."""
DEADLINE_SECONDS = 20.0
"""The longest a whole attempt may take, resolving the name included, whatever pace a receiver
answers at."""
MAX_ADDRESSES = 2
"""The most addresses of a name one attempt tries to connect to (the next if one refuses)."""
HOLD_SECONDS = DEADLINE_SECONDS + 60.0
"""How long a taken delivery is this worker's: past it (this worker died) it is due again. A
minute more than an attempt may take: for recording it, a late timer, a loaded machine."""
POLL_SECONDS = 1.0
"""How often each worker looks for due deliveries: a job's webhook leaves within about this."""
SENDERS = 4
"""Attempts one worker makes at once, so that a slow receiver does not hold up the others."""
USER_AGENT = "Ladder-Webhooks/1"

T = TypeVar("T")


class Deadline:
    """The end of one attempt: `left()` to bound each wait by, and a timer that shuts the
    socket being used when it comes, which ends whatever read, write or handshake is under way
    however it is paced (a socket timeout bounds one wait for bytes, not their sum)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._over = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left; TimeoutError when there are none."""
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            raise self.error()
        return left

    def error(self) -> TimeoutError:
        return TimeoutError(f"no answer within {self.seconds:g} s (the attempt's deadline)")

    def watch(self, sock: socket.socket | None) -> None:
        """Shut `sock` at the deadline (now, if it has passed); None: watch nothing."""
        with self._lock:
            self._sock = sock
            if self.expired and sock is not None:
                _shut(sock)

    def call(self, work: Callable[[], T]) -> T:
        """`work()` on a thread of its own, waited for until the deadline: for what cannot be
        interrupted, such as the system resolver (a thread still resolving is left to end)."""
        box: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append((True, work()))
            except BaseException as exc:  # handed to the caller
                box.append((False, exc))
            finally:
                done.set()

        threading.Thread(target=run, name="ladder-webhook-resolve", daemon=True).start()
        if not done.wait(self.left()):
            raise self.error()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _cut(self) -> None:
        with self._lock:
            if self._over:
                return
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    def cancel(self) -> None:
        """The attempt is over: the timer touches nothing from now on."""
        with self._lock:
            self._over = True
            self._sock = None
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: only the descriptor, not the TLS
    # state the thread blocked in it is using; that thread's read or write then fails at once.
    with contextlib.suppress(OSError):  # closed meanwhile
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Pinned(http.client.HTTPConnection):
    """An HTTP(S) connection to one address checked beforehand, whatever the host name now
    resolves to; Host and TLS (SNI, certificate) still name the host. Every step of it is
    bounded by the attempt's deadline."""

    def __init__(
        self, target: webhooks.Target, address: webhooks.Address, deadline: Deadline
    ) -> None:
        super().__init__(target.host, target.port, timeout=READ_SECONDS)
        self.address = address
        self.deadline = deadline
        self.tls = target.scheme == "https"
        # http.client leaves the port out of Host only when it is the scheme's own.
        self.default_port = 443 if self.tls else 80

    def connect(self) -> None:
        deadline = self.deadline
        sock = socket.create_connection(
            (str(self.address), self.port), min(CONNECT_SECONDS, deadline.left())
        )
        self.sock = sock  # closed with the connection, whatever happens next
        deadline.watch(sock)
        sock.settimeout(min(READ_SECONDS, deadline.left()))
        if self.tls:
            context = ssl.create_default_context()
            # The handshake after the deadline watches the TLS socket: wrapping detaches the
            # plain one.
            wrapped = context.wrap_socket(
                sock, server_hostname=self.host, do_handshake_on_connect=False
            )
            self.sock = wrapped
            deadline.watch(wrapped)
            wrapped.do_handshake()

    def close(self) -> None:
        self.deadline.watch(None)  # before the descriptor is freed for another socket
        super().close()


def post(
    target: webhooks.Target,
    allow_private: bool,
    body: bytes,
    headers: dict[str, str],
    resolver: webhooks.Resolver = webhooks.resolve,
) -> int:
    """POST `body` to the target at an address checked now, all within DEADLINE_SECONDS; the
    HTTP status. RefusedTarget or OSError (TimeoutError past the deadline; http.client's
    errors are OSErrors or HTTPException) when it cannot be made."""
    deadline = Deadline(DEADLINE_SECONDS)
    try:
        return _post(deadline, target, allow_private, body, headers, resolver)
    except (OSError, http.client.HTTPException) as exc:
        if deadline.expired:
            raise deadline.error() from exc
        raise
    finally:
        deadline.cancel()


def _post(
    deadline: Deadline,
    target: webhooks.Target,
    allow_private: bool,
    body: bytes,
    headers: dict[str, str],
    resolver: webhooks.Resolver,
) -> int:
    found = deadline.call(lambda: webhooks.addresses(target, allow_private, resolver))
    error: Exception | None = None
    for address in found[:MAX_ADDRESSES]:
        connection = Pinned(target, address, deadline)
        try:
            try:
                connection.connect()
            except OSError as exc:
                if deadline.expired:
                    raise
                error = exc  # refused or silent: the next address, as a browser would
                continue
            connection.request("POST", target.path, body=body, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()
    raise error or OSError("no address to connect to")


Post = Callable[[webhooks.Target, bool, bytes, dict[str, str]], int]


def attempt(
    db: Database, settings: Settings, delivery: deliveries.Due, send: Post = post
) -> dict[str, Any]:
    """Make one attempt at a taken delivery and record it; the attempt as recorded."""
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        webhooks.DELIVERY_HEADER: str(delivery.id),
        webhooks.SIGNATURE_HEADER: webhooks.sign(delivery.secret, str(delivery.id), body),
    }
    started, clock = utcnow(), time.monotonic()
    status: int | None = None
    error: str | None = None
    try:
        status = send(webhooks.parse(delivery.url), settings.webhook_allow_private, body, headers)
    except webhooks.RefusedTarget as exc:
        error = f"refused: the URL {exc}"
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    if status is not None and not 200 <= status < 300:
        error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    made = {
        "at": timestamp(started),
        "status": status,
        "error": error,
        "duration_ms": round((time.monotonic() - clock) * 1000, 1),
    }
    state, next_at = _next(settings, delivery, error is None, started)
    if not deliveries.record(db, delivery, made, state, next_at):
        # Its hold lapsed (this attempt overran it), the job was retried, or purged.
        log.info("webhook %d: no longer this worker's; attempt not recorded", delivery.id)
    elif state == deliveries.FAILED:
        log.warning("webhook %d for job %s: given up after %d attempts (%s)",
                    delivery.id, delivery.job_id, len(delivery.attempts) + 1, error)  # fmt: skip
    return made


def _next(
    settings: Settings, delivery: deliveries.Due, ok: bool, now: datetime
) -> tuple[str, datetime | None]:
    """The state an attempt leaves the delivery in, and when the next one is due."""
    if ok:
        return deliveries.DELIVERED, None
    failures = len(delivery.attempts) + 1
    wait = webhooks.retry_delay(failures, settings.webhook_first_retry)
    next_at = now + timedelta(seconds=wait)
    if next_at > delivery.created_at + timedelta(seconds=settings.webhook_retry_for):
        return deliveries.FAILED, None
    return deliveries.PENDING, next_at


class Sender:
    """Takes due deliveries and hands them to a few threads, never taking more than are free."""

    def __init__(self, db: Database, settings: Settings, send: Post = post) -> None:
        self.db, self.settings, self.send = db, settings, send
        self.pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="ladder-webhook")
        self.free = threading.Semaphore(SENDERS)

    def run_once(self) -> int:
        """Take what is due and start sending it; how many were taken."""
        room, taken = 0, []
        while self.free.acquire(blocking=False):
            room += 1
        try:
            if room:
                taken = deliveries.take_due(self.db, utcnow(), room, HOLD_SECONDS)
        finally:
            for _ in range(room - len(taken)):
                self.free.release()
        for delivery in taken:
            self.pool.submit(self._one, delivery)
        return len(taken)

    def _one(self, delivery: deliveries.Due) -> None:
        try:
            attempt(self.db, self.settings, delivery, self.send)
        except Exception:
            # Left as taken: it comes due again after HOLD_SECONDS.
            log.warning("webhook %d: attempt failed", delivery.id, exc_info=True)
        finally:
            self.free.release()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def install(app: LadderCelery) -> None:
    """Look for due deliveries every POLL_SECONDS from each worker's main process."""
    stop = threading.Event()

    def loop() -> None:
        sender = Sender(app.db, app.settings)
        while not stop.wait(POLL_SECONDS):
            try:
                sender.run_once()
            except Exception:
                log.warning("webhook pass failed; trying again later", exc_info=True)
        sender.close()

    def on_ready(**_: Any) -> None:
        threading.Thread(target=loop, name="ladder-webhooks", daemon=True).start()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(lambda **_: stop.set(), weak=False)
