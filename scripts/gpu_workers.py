"""`make worker-gpu`: two Celery workers per GPU, each seeing only its own device.

With CUDA_VISIBLE_DEVICES set to its GPU, one serves the `gpu` queue (prefork, concurrency 1,
prefetch 1: its parent never touches CUDA, so a child forked after a time limit starts clean)
and one the `gpu.generate` queue (a threads pool decoding up to LADDER_GENERATE_BATCH jobs
together on one loaded model: it never forks). SIGINT or SIGTERM stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.processes import worker  # noqa: E402


def gpu_count() -> int:
    """GPUs NVML sees (0 where there is no driver); CUDA stays untouched in this process."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def main() -> int:
    ids = (
        [g.strip() for g in os.environ["LADDER_GPUS"].split(",") if g.strip()]
        if "LADDER_GPUS" in os.environ
        else [str(i) for i in range(gpu_count())]
    )
    if not ids:
        print("no GPU here (NVML sees none): run `make worker-cpu`", file=sys.stderr)
        return 1
    workers = []
    for gpu in ids:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
        for queue, name, concurrency in (
            ("gpu", f"gpu{gpu}", 1),
            ("gpu.generate", f"gen{gpu}", None),
        ):
            workers.append(subprocess.Popen(worker(queue, name, concurrency), env=env))
            print(f"{queue} worker for GPU {gpu}: pid {workers[-1].pid}", flush=True)

    def stop(signum: int, _frame: FrameType | None) -> None:
        for process in workers:
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return max(process.wait() for process in workers)


if __name__ == "__main__":
    sys.exit(main())
