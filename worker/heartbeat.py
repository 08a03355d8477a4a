"""Each worker's heartbeat: who it is, its pool and device, every few seconds into Redis."""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from shared import workers
from worker.app import LadderCelery

log = logging.getLogger(__name__)


def describe_device(pool: str) -> dict[str, Any]:
    """The device a worker computes on, as the registry and the planner see it."""
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        info["ram_bytes"] = int(fields["MemTotal"].split()[0]) * 1024
        info["ram_available_bytes"] = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    if pool == "gpu":
        import torch  # only GPU workers pay for the import here

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            info.update(
                gpu=torch.cuda.get_device_name(), gpu_total_bytes=total, gpu_free_bytes=free
            )
    return info


def install(app: LadderCelery) -> None:
    """Start beating when the worker is ready; stop and drop out when it shuts down."""
    stop = threading.Event()

    def on_ready(sender: Any, **_: Any) -> None:
        queues = sorted(sender.app.amqp.queues.consume_from or ["cpu"])
        pool = "gpu" if "gpu" in queues else "cpu"
        name = sender.hostname
        started = time.time()

        def loop() -> None:
            while not stop.is_set():
                info = {
                    "name": name, "pid": os.getpid(), "pool": pool, "queues": queues,
                    "concurrency": sender.pool.num_processes if sender.pool else None,
                    "device": describe_device(pool), "started_at": started, "seen_at": time.time(),
                }  # fmt: skip
                try:
                    workers.beat(app.redis, name, info)
                except Exception:
                    log.warning("heartbeat to Redis failed; retrying", exc_info=True)
                stop.wait(workers.INTERVAL)
            workers.forget(app.redis, name)

        threading.Thread(target=loop, name="ladder-heartbeat", daemon=True).start()

    def on_shutdown(**_: Any) -> None:
        stop.set()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
