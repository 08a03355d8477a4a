"""`make run` as a newcomer uses it: private Redis and SQLite, one job, then Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.kinds.generate import gguf_engine_installed
from tests.support import Client

ROOT = Path(__file__).resolve().parents[2]
# A process started in the background inherits Ctrl-C ignored; a user's terminal has it on.
RESTORE_CTRL_C = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sessions_alive(sids: set[int]) -> list[str]:
    out = subprocess.run(
        ["ps", "-e", "-o", "sid=,pid=,stat=,args="], capture_output=True, text=True, check=True
    )
    alive = []
    for line in out.stdout.splitlines():
        sid, _pid, stat, *_ = line.split(maxsplit=3)
        if int(sid) in sids and not stat.startswith("Z"):
            alive.append(line.strip())
    return alive


def test_make_run_serves_a_job_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"BROKER_URL", "DATABASE_URL", "LADDER_ADMIN_TOKEN", "LADDER_SECRET_KEY"}
    }
    env.update(
        PORT=str(port),
        LADDER_VAR_DIR=str(tmp_path / "var"),
        LADDER_WORKER_CONCURRENCY="1",
        LADDER_MODELS_DIR=str(ROOT / "var" / "models"),
    )  # where make install put SmolLM2
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        # A terminal of its own, where Ctrl-C is not ignored, as a user's shell would give it.
        make = subprocess.Popen(
            [sys.executable, "-c", RESTORE_CTRL_C, "make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "admin token:" not in log.read_text():
            assert make.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        token = re.search(r"admin token: (\S+)", text)
        assert token, text
        assert f"http://127.0.0.1:{port}/api/v1/jobs" in text and "curl" in text
        started = {int(pid) for pid in re.findall(r"pid (\d+)", text)}
        assert len(started) == 4  # redis, worker, generate worker, api

        client = Client(f"http://127.0.0.1:{port}", token.group(1))
        assert client.call("GET", "/readyz").json()["checks"] == {"database": "ok", "broker": "ok"}
        job = client.wait(client.submit({"n": 10})["id"], timeout=60)
        assert job["status"] == "succeeded" and job["result"]["value"] == "89"
        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_new_tokens": 4}
        said = client.wait(client.submit(chat, kind="generate")["id"], timeout=120)
        # With llama.cpp built, the CPU pool runs smollm2 on its GGUF twin.
        served = "smollm2-gguf" if gguf_engine_installed() else "smollm2"
        assert said["status"] == "succeeded" and said["result"]["model"] == served
        assert (tmp_path / "var" / "ladder.db").exists()
        for secret in ("admin-token", "secret-key"):  # made once, readable by their owner only
            assert (tmp_path / "var" / secret).stat().st_mode & 0o777 == 0o600
        assert sessions_alive(started), "the children should be running now"
    finally:
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in make's terminal
        try:
            make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            pytest.fail("make run did not stop on Ctrl-C")
    deadline = time.monotonic() + 15
    while (left := sessions_alive(started)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind: {left}"
    assert "stopping" in log.read_text()
