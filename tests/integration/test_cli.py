"""The `ladder` command as a user runs it, a process against the real stack: what it prints
and the exit code of every outcome (0 succeeded, 1 failed or cancelled, 2 usage or 4xx,
3 unreachable, 4 timeout)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api import create_app
from ladder_client import Client
from tests.processes import Stack
from tests.support import ADMIN_TOKEN, LONG

LADDER = Path(sys.executable).with_name("ladder")
"""The console script `make install` puts in the virtual environment."""


def ladder(
    stack: Stack, *args: str, stdin: str | None = None, token: str = ADMIN_TOKEN, **env: str
) -> subprocess.CompletedProcess[str]:
    if not LADDER.exists():
        pytest.fail(f"{LADDER} is missing: `make install` installs client/ into .venv")
    environ = {
        **os.environ,
        "LADDER_URL": stack.base_url,
        "LADDER_TOKEN": token,
        "XDG_CONFIG_HOME": "/nonexistent",
        **env,
    }
    return subprocess.run(
        [str(LADDER), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_submit_wait_succeeds_with_0(stack: Stack) -> None:
    done = ladder(stack, "submit", "stairs", "n=10", "steps=[1, 2]", "--wait", "--json")
    job = as_json(done)
    assert job["status"] == "succeeded" and job["result"]["value"] == "89"
    assert as_json(ladder(stack, "get", job["id"]))["id"] == job["id"]  # piped: JSON


def test_a_failed_job_exits_1_and_a_cancelled_one_too(stack: Stack) -> None:
    # An API whose config gives stairs 3 s; the worker enforces what the message carries.
    short = create_app(dataclasses.replace(stack.settings, time_limits={"stairs": 3}))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    failing = (
        short.test_client()
        .post("/api/v1/jobs", json={"kind": "stairs", "params": LONG}, headers=headers)
        .get_json()
    )
    short.extensions["ladder"].db.engine.dispose()
    done = ladder(stack, "wait", failing["id"])
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "timeout"

    running = as_json(
        ladder(
            stack,
            "submit",
            "stairs",
            f"n={LONG['n']}",
            "--params-json",
            json.dumps({"steps": LONG["steps"]}),
        )
    )
    assert as_json(ladder(stack, "cancel", running["id"]))["status"] == "cancelled"
    assert ladder(stack, "wait", running["id"]).returncode == 1
    assert ladder(stack, "get", running["id"]).returncode == 1
    again = ladder(stack, "cancel", running["id"])
    assert again.returncode == 2 and "409" in again.stderr


def test_4xx_answers_exit_2_and_say_why(stack: Stack) -> None:
    invalid = ladder(stack, "submit", "stairs", "n=-1")
    assert invalid.returncode == 2 and "params.n" in invalid.stderr
    unknown = ladder(stack, "get", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 2 and "404" in unknown.stderr
    denied = ladder(stack, "ls", token="not-a-token")
    assert denied.returncode == 2 and "401" in denied.stderr
    assert ladder(stack, "submit").returncode == 2  # argparse: a kind is required
    assert ladder(stack, "submit", "stairs", "n").returncode == 2


def test_an_unreachable_service_exits_3(stack: Stack) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = ladder(stack, "kinds", LADDER_URL=f"http://127.0.0.1:{port}")
    assert done.returncode == 3 and "cannot reach" in done.stderr


def test_wait_past_its_timeout_exits_4(stack: Stack) -> None:
    job = as_json(ladder(stack, "submit", "stairs", "--params-json", json.dumps(LONG)))
    try:
        done = ladder(stack, "wait", job["id"], "--timeout", "1")
        assert done.returncode == 4, done.stderr
        assert json.loads(done.stdout)["status"] in {"queued", "running"}
    finally:
        with Client(stack.base_url, ADMIN_TOKEN) as client:
            client.cancel(job["id"])


def test_stream_prints_a_generation_as_it_comes(stack: Stack) -> None:
    job = as_json(ladder(stack, "submit", "generate", "prompt=Climb", "max_new_tokens=24"))
    done = ladder(stack, "stream", job["id"])
    assert done.returncode == 0, done.stderr
    text = as_json(ladder(stack, "get", job["id"]))["result"]["text"]
    assert done.stdout == text  # not a terminal: no newline added


def test_ls_kinds_and_artifact(stack: Stack, tmp_path: Path) -> None:
    job = as_json(ladder(stack, "submit", "stairs", "n=500000", "--wait"))
    listed = as_json(ladder(stack, "ls", "--kind", "stairs", "--limit", "3"))
    assert len(listed) == 3 and listed[0]["id"] == job["id"]
    assert {k["name"] for k in as_json(ladder(stack, "kinds"))} >= {"stairs", "generate"}
    target = tmp_path / "value.txt"
    done = ladder(stack, "artifact", job["id"], "value.txt", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert len(target.read_text()) == job["result"]["digits"]
    missing = ladder(stack, "artifact", job["id"], "nope.png", "-o", str(tmp_path / "x"))
    assert missing.returncode == 2 and not (tmp_path / "x").exists()


def test_chat_keeps_the_conversation(stack: Stack) -> None:
    done = ladder(stack, "chat", "--max-tokens", "4", "--seed", "1", stdin="Hello\nAgain\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") >= 2  # an answer to each line
    with Client(stack.base_url, ADMIN_TOKEN) as client:
        second = client.get(next(client.jobs(kind="generate")).id)
    assert second.params is not None
    roles = [m["role"] for m in second.params["messages"]]
    assert roles == ["user", "assistant", "user"]  # the whole history went with the second
    refused = ladder(stack, "chat", "--model", "../etc", stdin="Hi\n")
    assert refused.returncode == 2 and "model" in refused.stderr


def test_local_mistakes_exit_2_without_a_traceback(stack: Stack, tmp_path: Path) -> None:
    job = as_json(ladder(stack, "submit", "stairs", "n=500000", "--wait"))  # has value.txt
    nowhere = tmp_path / "missing" / "value.txt"
    unwritable = ladder(stack, "artifact", job["id"], "value.txt", "-o", str(nowhere))
    assert unwritable.returncode == 2 and f"cannot write {nowhere}" in unwritable.stderr
    address = stack.base_url.removeprefix("http://")
    schemeless = ladder(stack, "get", job["id"], LADDER_URL=address)
    assert schemeless.returncode == 2 and "http:// or https://" in schemeless.stderr
    negative = ladder(stack, "ls", "--limit", "-1")
    assert negative.returncode == 2 and "--limit" in negative.stderr
    for done in [unwritable, schemeless, negative]:
        assert "Traceback" not in done.stderr


def test_the_config_file_s_token_goes_only_to_its_own_url(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "ladder").mkdir()
    config = tmp_path / "ladder" / "config.toml"
    config.write_text(f'url = "http://ladder.example.com"\ntoken = "{ADMIN_TOKEN}"\n')
    # LADDER_URL names this stack, not the file's service: its token stays home.
    elsewhere = ladder(stack, "ls", token="", XDG_CONFIG_HOME=str(tmp_path))
    assert elsewhere.returncode == 2 and "401" in elsewhere.stderr
    assert "token is for http://ladder.example.com" in elsewhere.stderr
    config.write_text(f'url = "{stack.base_url}/"\ntoken = "{ADMIN_TOKEN}"\n')
    home = ladder(stack, "ls", "--limit", "1", token="", XDG_CONFIG_HOME=str(tmp_path))
    assert home.returncode == 0, home.stderr
