"""A GPU worker's prefork parent must never initialise CUDA: a child it forks later (after a
time limit or a revoke) would inherit a CUDA it cannot use. Its heartbeat reads NVML instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PARENT = """
import sys
from shared.config import Settings
from worker.factory import create_celery
from worker.heartbeat import describe_device

create_celery(Settings())
info = describe_device("gpu")
assert "torch" not in sys.modules, "the worker's parent imported torch"
print(sorted(info))
"""


def test_a_gpu_workers_parent_and_its_heartbeat_never_import_torch() -> None:
    out = subprocess.run([sys.executable, "-c", PARENT], cwd=ROOT, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "cores" in out.stdout  # and, on a machine with NVML and a GPU, its name and memory
