"""The retention purge's schedule: every worker offers to run it, one runs it at a time.

Each worker's main process wakes every `purge_every` seconds and tries to take a lock in Redis
that lasts `purge_every` seconds: as with the reconciler, a pass runs about once a period across
all workers and machines, whichever worker gets there first. A long pass (a backlog after the
policy was shortened) renews the lock after each batch, so that no second pass starts beside it.
`purge_every` = 0 turns the periodic purge off.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from shared import retention
from shared.models import utcnow
from worker.app import LadderCelery

log = logging.getLogger(__name__)

LOCK = "ladder:purge"
PASSES = "ladder:purge:passes"
"""How many purge passes have ended, across workers: something to wait on."""


def run_once(app: LadderCelery) -> dict[str, int] | None:
    """One pass if no other worker holds the lock; what it deleted per status, or None."""
    hold = max(1, app.settings.purge_every)
    if not app.redis.set(LOCK, "1", nx=True, ex=hold):
        return None
    deleted = retention.purge(
        app.db, app.redis, app.settings, utcnow(), after_batch=lambda: app.redis.expire(LOCK, hold)
    )
    app.redis.incr(PASSES)
    if any(deleted.values()):
        counts = ", ".join(f"{n} {status}" for status, n in deleted.items() if n)
        log.info("purge: deleted %d ended jobs past retention: %s", sum(deleted.values()), counts)
    return deleted


def install(app: LadderCelery) -> None:
    """Offer a pass every `purge_every` seconds from each worker's main process."""
    every = app.settings.purge_every
    if every <= 0:
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                run_once(app)
            except Exception:
                log.warning("purge pass failed; trying again later", exc_info=True)

    def on_ready(**_: Any) -> None:
        threading.Thread(target=loop, name="ladder-purger", daemon=True).start()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(lambda **_: stop.set(), weak=False)
