"""`make worker-gpu`: one Celery worker process per GPU, each seeing only its own device.

Each serves the `gpu` queue with concurrency 1 and prefetch 1, with CUDA_VISIBLE_DEVICES set
to its GPU, so a model is loaded once per device and jobs never share a card's memory.
SIGINT or SIGTERM stops them all.
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
    if "LADDER_GPUS" in os.environ:
        return len([g for g in os.environ["LADDER_GPUS"].split(",") if g.strip()])
    import torch

    return torch.cuda.device_count()


def main() -> int:
    ids = (
        [g.strip() for g in os.environ["LADDER_GPUS"].split(",") if g.strip()]
        if "LADDER_GPUS" in os.environ
        else [str(i) for i in range(gpu_count())]
    )
    if not ids:
        print(
            "no GPU here (torch.cuda.device_count() is 0): run `make worker-cpu`", file=sys.stderr
        )
        return 1
    workers = []
    for gpu in ids:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
        workers.append(subprocess.Popen(worker("gpu", f"gpu{gpu}", concurrency=1), env=env))
        print(f"gpu worker for GPU {gpu}: pid {workers[-1].pid}", flush=True)

    def stop(signum: int, _frame: FrameType | None) -> None:
        for process in workers:
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return max(process.wait() for process in workers)


if __name__ == "__main__":
    sys.exit(main())
