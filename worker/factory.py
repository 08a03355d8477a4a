"""`create_celery(settings)`: a worker's Celery app with its task, heartbeat, reconciler,
retention purge and webhook deliveries."""

from __future__ import annotations

from celery.signals import worker_process_init

from shared import kinds
from shared.config import Settings
from worker import heartbeat, purger, reconciler, tasks, webhooks
from worker.app import LadderCelery


def create_celery(settings: Settings) -> LadderCelery:
    """A worker app: late acks, a dead child's job handed back, one message prefetched at a time."""
    kinds.check_settings(settings)
    app = LadderCelery(settings)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        # Events cost about a fifth of a small job's throughput; Flower, when it runs, turns
        # them on by itself (celery control enable_events), so they are off unless asked for.
        worker_send_task_events=settings.task_events,
    )
    tasks.register(app)
    worker_process_init.connect(lambda **_: app.after_fork(), weak=False)
    heartbeat.install(app)
    reconciler.install(app)
    purger.install(app)
    webhooks.install(app)
    return app
