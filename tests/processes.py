"""Ladder's parts as real processes that tests can start, kill and start again: Celery workers,
the API under gunicorn, and private Redis and PostgreSQL servers; and the two Ladders the tests
assemble from them: the integration tests' `Stack` and the fault tests' `Cluster`."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import select
from werkzeug.serving import make_server

from api import create_app
from scripts import processes as commands
from scripts.run import answers, free_port, start
from shared.config import Settings
from shared.db import Database
from shared.models import Job
from tests.support import Client, Reply, wait_for

ROOT = Path(__file__).resolve().parents[1]
RECONCILE_AFTER = 2
"""Seconds the tests' workers wait before they reconcile (production waits a minute), so
that a test can see the reconciler at work; it passes every second."""
PURGE_EVERY = 1
"""Seconds between the tests' workers' retention purges (production: a minute), so that a test
can see the periodic purge at work; with the default policy it deletes only jobs a test made
look days old."""


@dataclass(frozen=True)
class Host:
    """Where a process runs: this machine's loopback, or a test's network namespace, where it
    also gets a hostname of its own (a UTS namespace), as on a machine of its own."""

    address: str = "127.0.0.1"
    netns: str | None = None
    name: str = ""

    def wrap(self, argv: list[str]) -> list[str]:
        if self.netns is None:
            return argv
        rename = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--",
                "sh", "-c", rename, self.name, *argv]  # fmt: skip


LOCAL = Host()


def ladder_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a Ladder process reads its settings from (see Settings.from_env)."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        "LADDER_MODELS_DIR": str(settings.models_dir),
        "LADDER_DEFAULT_GENERATE_MODEL": settings.default_generate_model,
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    if settings.admin_token:
        env["LADDER_ADMIN_TOKEN"] = settings.admin_token
    if settings.secret_key:
        env["LADDER_SECRET_KEY"] = settings.secret_key
    if settings.webhook_allow_private:
        env["LADDER_WEBHOOK_ALLOW_PRIVATE"] = "1"
    env["LADDER_WEBHOOK_FIRST_RETRY"] = str(settings.webhook_first_retry)
    return env


def _kill_group(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.wait()


@dataclass
class Worker:
    """A real `celery worker` process, started the way `make worker-cpu` starts one."""

    process: subprocess.Popen[bytes]
    log: Path
    name: str

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """SIGKILL to the worker and its pool: no shutdown code runs, as when a host dies."""
        _kill_group(self.process, signal.SIGKILL)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Its pool processes stopped for the block (SIGSTOP, then SIGCONT): a job they run
        stays running however fast this machine computes, its lease good for up to
        worker.leases.TTL seconds, while the main process (heartbeats, reconciler) goes on.
        A threads pool has no pool processes: the whole worker stops then."""
        children = self.children() or [self.process.pid]
        for pid in children:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in children:
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(self.process, signal.SIGKILL)


def start_worker(
    settings: Settings,
    log: Path,
    name: str,
    concurrency: int | None = 1,
    host: Host = LOCAL,
    queue: str = "cpu",
    **env: str,
) -> Worker:
    """A worker of `queue`: `cpu` (prefork), or `cpu.generate` (threads, a batch's worth
    when `concurrency` is None)."""
    env = {
        "LADDER_RECONCILE_AFTER": str(RECONCILE_AFTER),
        "LADDER_PURGE_EVERY": str(PURGE_EVERY),
        **env,
    }
    argv = commands.worker(queue, name, concurrency, extra=commands.QUICK_START)
    offset = log.stat().st_size if log.exists() else 0  # a restart appends to the same log
    worker = Worker(start(name, host.wrap(argv), ladder_env(settings, **env), log), log, name)

    def ready() -> bool:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.log_text()[-3000:]}")
        return " ready." in worker.log_text()[offset:]

    try:
        wait_for(ready, f"worker {name}")
    except BaseException:
        worker.stop()
        raise
    return worker


@dataclass
class ApiServer:
    """The API under gunicorn, as `make run` serves it."""

    settings: Settings
    log: Path
    host: Host = LOCAL
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Variables over the settings' own (a limit a test lowers, say)."""

    @property
    def url(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    def start(self) -> None:
        argv = commands.api(bind=f"{self.host.address}:{self.port}")
        env = ladder_env(self.settings, **self.env)
        self.process = start("api", self.host.wrap(argv), env, self.log)
        wait_for(lambda: answers(f"{self.url}/healthz"), "the API")

    def kill(self) -> None:
        if self.process is not None:
            _kill_group(self.process, signal.SIGKILL)


@contextlib.contextmanager
def served_app(settings: Settings) -> Iterator[str]:
    """Another API process's worth, in this one: `create_app(settings)` served on a free port
    of this machine, for a test that needs settings of its own. Yields its URL."""
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        app.extensions["ladder"].db.engine.dispose()


@dataclass
class RedisServer:
    """A Redis of the test's own that keeps nothing on disk, like this machine's."""

    log: Path
    host: Host = LOCAL
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Variables over the settings' own (a limit a test lowers, say)."""

    @property
    def url(self) -> str:
        return f"redis://{self.host.address}:{self.port}/0"

    def start(self) -> None:
        argv = commands.redis(self.port, self.log.parent, self.host.address)
        self.process = start("redis", self.host.wrap(argv), dict(os.environ), self.log)
        wait_for(self._answers, "redis-server", 20)

    def _answers(self) -> bool:
        try:
            client = redis.Redis(host=self.host.address, port=self.port, socket_timeout=1)
            return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None:
            _kill_group(self.process, signal.SIGKILL)


class PostgresServer:
    """A PostgreSQL cluster of the test's own, so that a test may stop it.

    initdb refuses to run as root, so as root the cluster belongs to the `postgres` user."""

    def __init__(self, host: Host = LOCAL) -> None:
        self.host = host
        self.bin = Path(shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb").parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ladder-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        with (self.dir / "data" / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\n")  # a test's private network only

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin / tool), *args]
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        subprocess.run(self.host.wrap(argv), check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        listen = f"-c listen_addresses={self.host.address}"
        options = f"-p {self.port} -k {self.dir} {listen} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"),
                  "-o", options, "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """A new database; its SQLAlchemy URL."""
        server = f"postgres@{self.host.address}:{self.port}"
        with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{server}/{name}"

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Stack:
    """Ladder running for real: API over HTTP, a worker process, a generate worker, Redis,
    and one database."""

    backend: str
    settings: Settings
    client: Client
    worker: Worker
    base_url: str
    generator: Worker


@dataclass
class Cluster:
    """A whole Ladder to break: a PostgreSQL it may stop, a Redis it may restart empty, the API
    under gunicorn and the Celery workers it starts, kills and starts again."""

    settings: Settings
    tmp: Path
    postgres: PostgresServer
    redis: RedisServer
    api: ApiServer
    client: Client
    db: Database
    workers: list[Worker] = field(default_factory=list)

    def worker(
        self,
        name: str,
        concurrency: int | None = 1,
        host: Host = LOCAL,
        queue: str = "cpu",
        **env: str,
    ) -> Worker:
        log = self.tmp / f"worker-{name}.log"
        started = start_worker(self.settings, log, name, concurrency, host, queue, **env)
        self.workers.append(started)
        return started

    def submit_many(self, params: list[dict[str, Any]], clients: int = 16) -> list[Reply]:
        """Submit jobs from many threads at once, as many clients would."""
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(self._submit, params))

    def _submit(self, params: dict[str, Any]) -> Reply:
        return self.client.call("POST", "/api/v1/jobs", {"kind": "stairs", "params": params})

    def rows(self, ids: list[str] | None = None) -> dict[str, Job]:
        with self.db.session() as session:
            query = select(Job)
            if ids is not None:
                query = query.where(Job.id.in_(ids))
            return {job.id: job for job in session.scalars(query)}

    def statuses(self) -> Counter[str]:
        return Counter(str(job.status) for job in self.rows().values())

    def wait_until_ended(self, count: int, timeout: float) -> dict[str, Job]:
        """Wait until `count` jobs have ended; the rows."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            ended = [j for j in rows.values() if j.status in {"succeeded", "failed", "cancelled"}]
            if len(ended) >= count:
                return rows
            assert time.monotonic() < deadline, f"after {timeout} s: {self.statuses()}"
            time.sleep(0.5)

    def running_on(self, worker: Worker) -> set[str]:
        prefix = f"{worker.name}@"
        return {
            job.id
            for job in self.rows().values()
            if job.status == "running" and (job.worker or "").startswith(prefix)
        }

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.tmp.glob("*.log"))

    def stop(self) -> None:
        """Kill what the cluster started; its PostgreSQL server is the caller's."""
        for worker in self.workers:
            worker.kill()
        self.api.kill()
        self.redis.kill()
        self.db.engine.dispose()


def in_background(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
