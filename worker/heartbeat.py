"""Each worker's heartbeat: who it is, its pool and device, every few seconds into Redis."""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from celery.worker import state as worker_state

from shared import workers
from worker.app import LadderCelery
from worker.device import meminfo

log = logging.getLogger(__name__)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(pool: str) -> dict[str, Any]:
    """The device a worker computes on: CPU, cores and RAM; GPU name and memory when it has one.

    GPU figures come from NVML, never torch.cuda: a prefork parent that initialised CUDA would
    hand a broken CUDA to every child it forks later (after a time limit or a revoke)."""
    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count()}
    memory = meminfo()
    if "MemTotal" in memory and "MemAvailable" in memory:
        info["ram_bytes"] = memory["MemTotal"]
        info["ram_used_bytes"] = memory["MemTotal"] - memory["MemAvailable"]
    if pool == "gpu":
        info.update(gpu_info())
    return info


def gpu_info() -> dict[str, Any]:
    """The first visible GPU's name and memory from NVML; nothing where NVML is missing."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return {}
    try:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
        handle = (
            pynvml.nvmlDeviceGetHandleByIndex(int(visible))
            if visible.isdigit()
            else pynvml.nvmlDeviceGetHandleByUUID(visible)
        )
        used = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        return {
            "gpu": name.decode() if isinstance(name, bytes) else name,
            "gpu_bytes": int(used.total),
            "gpu_used_bytes": int(used.used),
        }
    except pynvml.NVMLError:
        log.warning("NVML could not describe the GPU", exc_info=True)
        return {}
    finally:
        pynvml.nvmlShutdown()


def install(app: LadderCelery) -> None:
    """Start beating when the worker is ready; say so at once when it shuts down."""
    stop = threading.Event()
    state: dict[str, str] = {}

    def on_ready(sender: Any, **_: Any) -> None:
        queues = sorted(sender.app.amqp.queues.consume_from or ["cpu"])
        # A queue is a pool (`gpu`) or a kind's own queue in it (`gpu.generate`).
        pool = "gpu" if any(q.split(".")[0] == "gpu" for q in queues) else "cpu"
        name = state["name"] = sender.hostname
        started = time.time()

        def loop() -> None:
            while not stop.is_set():
                try:
                    # prefork names its processes; a threads pool has none, only its size.
                    pool_info = (sender.pool.info if sender.pool else None) or {}
                    children = set(pool_info.get("processes", []))
                    info = {
                        "name": name, "hostname": platform.node(), "pid": os.getpid(),
                        "pool": pool, "queues": queues,
                        "concurrency": len(children) or pool_info.get("max-concurrency") or 1,
                        "device": describe_device(pool), "started_at": started,
                        # What the worker really holds now (a killed child's job drops out).
                        "running": sorted(r.id for r in list(worker_state.active_requests)),
                    }  # fmt: skip
                    workers.beat(app.redis, name, info)
                    if children:
                        workers.prune_models(app.redis, name, children)
                except Exception:
                    log.warning("heartbeat to Redis failed; retrying", exc_info=True)
                stop.wait(workers.INTERVAL)

        threading.Thread(target=loop, name="ladder-heartbeat", daemon=True).start()

    def on_shutdown(**_: Any) -> None:
        stop.set()
        if "name" in state:
            try:
                workers.forget(app.redis, state["name"])
            except Exception:
                log.warning("could not mark this worker stopped in Redis", exc_info=True)

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
