"""Shared pieces of the benchmarks: process handling, percentiles, and RESULTS.md sections."""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
BIN = Path(sys.executable).parent
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores"


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for_line(log: Path, text: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log} never said {text!r}:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def write_section(name: str, body: str) -> None:
    """Replace (or add) the section `## name` of RESULTS.md with `body`."""
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nMade by `make bench`.\n"
    )
    section = f"## {name}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.M | re.S)
    text = (
        pattern.sub(lambda _: section + "\n", text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section
    )
    RESULTS.write_text(text.rstrip() + "\n")
    print(section)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new database on BENCH_POSTGRES for one run, dropped afterwards; its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    server = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Drive:
    """What the clients saw."""

    accepted: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


def drive(
    base_url: str,
    tokens: list[str],
    jobs: int,
    kind: str = "stairs",
    params: dict[str, Any] | None = None,
) -> Drive:
    """POST `jobs` jobs from one thread per token, each on one keep-alive connection; stairs
    with n < 500 unless `params` are given."""
    address = urlsplit(base_url)
    seen = Drive()

    def client(index: int) -> None:
        headers = {"Authorization": f"Bearer {tokens[index]}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
        for n in range(index, jobs, len(tokens)):
            body = json.dumps({"kind": kind, "params": params or {"n": n % 500}})
            started = time.perf_counter()
            conn.request("POST", "/api/v1/jobs", body, headers)
            response = conn.getresponse()
            reply = response.read()
            seen.latencies.append(time.perf_counter() - started)  # list.append is atomic
            seen.statuses[response.status] += 1
            if response.status == 202:
                seen.accepted.append(json.loads(reply)["id"])
        conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        list(pool.map(client, range(len(tokens))))
    seen.seconds = time.perf_counter() - started
    return seen
