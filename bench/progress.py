"""What progress reporting costs: the same runs with and without it, in one process.

1. What each piece costs alone: a report that goes nowhere (the throttle's verdict), a
   `progress` event (one pipeline to Redis), a write of the row (one conditional UPDATE on
   SQLite, and on PostgreSQL when BENCH_POSTGRES answers).
2. stairs through Kitamasa (the only stairs runs that report), exact: a long run (n = 10^6,
   steps 1..50), one just past the point where reporting starts, and a short one that never
   reports, each with a real RunContext's `progress` (Redis and SQLite, the row of a running
   job) and with none, runs interleaved, medians.
3. generate on SmolLM2 through each engine (llama.cpp on its GGUF, transformers fp32): the same
   greedy job with the job thread reporting tokens, and with it waiting silently, interleaved.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import POSTGRES, machine, scratch_database, write_section
from bench.service import BROKER_URL
from shared import jobs, streams
from shared.config import Settings
from shared.db import Database
from shared.kinds import get
from shared.kinds.generate import gguf_engine_installed
from shared.models import ApiKey, Job, JobStatus, utcnow
from shared.schema import upgrade
from worker.context import RunContext
from worker.kinds.generate import batch, run
from worker.kinds.stairs import ways
from worker.progress import Progress

MODELS = Path(os.environ.get("LADDER_MODELS_DIR", "var/models"))
SETTINGS = Settings(models_dir=MODELS)
JOB_ID = "00000000-0000-4000-8000-00000000bec4"
STAIRS = [
    ("n = 10^6, steps 1..50", 10**6, list(range(1, 51)), 5),
    ("n = 3·10^5, steps 1..50", 3 * 10**5, list(range(1, 51)), 7),
    ("n = 10^5, steps 1..3 (short: never reports)", 10**5, [1, 2, 3], 101),
]
GENERATE = [("smollm2-gguf", "auto", 128, 9), ("smollm2", "none", 64, 5)]
"""Model, quantization, new tokens, rounds: on 2 cores a round moves by 10 % either way."""


def running_job(url: str) -> Database:
    """A database at `url` holding one running job (attempt 1), whose row progress writes."""
    upgrade(url)
    db = Database(url)
    with db.session() as session:
        key = ApiKey(name="bench", token_hash="0" * 64)
        session.add(key)
        session.flush()
        session.add(Job(id=JOB_ID, api_key_id=key.id, kind="stairs", params={}, priority=5,
                        device="auto", queue="cpu", status=JobStatus.RUNNING, attempts=1,
                        started_at=utcnow()))  # fmt: skip
    return db


@dataclass
class Costs:
    """Seconds each piece costs alone."""

    report: float
    event: float
    row: float


@dataclass
class Tally:
    """What one run's progress did: the runner's reports, the events and row writes let out."""

    reports: int = 0
    events: int = 0
    rows: int = 0

    def seconds(self, costs: Costs) -> float:
        return self.reports * costs.report + self.events * costs.event + self.rows * costs.row


class Counted(RunContext):
    """A real RunContext that counts its runner's reports."""

    reports = 0

    def progress(self, fraction: float, stage: str | None = None, **detail: Any) -> None:
        self.reports += 1
        super().progress(fraction, stage, **detail)


class Silent(RunContext):
    def progress(self, fraction: float, stage: str | None = None, **detail: Any) -> None:
        pass


@contextmanager
def reporting(redis: Any, db: Database) -> Iterator[tuple[Counted, Tally]]:
    """A context whose progress reaches Redis and the row; the tally is complete at the end."""
    redis.delete(streams.stream_key(JOB_ID))
    tally = Tally()
    real = jobs.record_progress

    def counted(db: Database, job_id: str, attempt: int, fraction: float) -> bool:
        tally.rows += 1
        return real(db, job_id, attempt, fraction)

    jobs.record_progress = counted
    try:
        context = Counted(JOB_ID, SETTINGS, redis, db=db, attempt=1)
        yield context, tally
    finally:
        jobs.record_progress = real
    tally.reports = context.reports
    tally.events = sum(1 for _, e, _ in streams.read(redis, JOB_ID, "0", None) if e == "progress")


@contextmanager
def silent_engine() -> Iterator[None]:
    """The job thread waits for its sequence without waking, as before progress existed."""
    every = batch.REPORT_SECONDS
    batch.REPORT_SECONDS = None
    try:
        yield
    finally:
        batch.REPORT_SECONDS = every


def per_call(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def unit_costs(redis: Any, sqlite: Database, postgres: Database | None) -> tuple[Costs, list[str]]:
    rows = []
    quiet = Progress(redis, None, JOB_ID, 1)
    fractions = iter([i / 1e7 for i in range(1, 10**6)])
    report = per_call(lambda: quiet.report(next(fractions), "bench"), 200_000)
    rows.append(f"| a report that goes nowhere (throttled) | {report * 1e6:.2f} µs |")
    redis.delete(streams.stream_key(JOB_ID))
    event = per_call(lambda: streams.publish(redis, JOB_ID, "progress", {"progress": 0.5}), 2_000)
    rows.append(f"| a `progress` event (Redis pipeline: XADD, EXPIRE) | {event * 1e6:.0f} µs |")
    written = {}
    for name, db in [("SQLite", sqlite), ("PostgreSQL", postgres)]:
        if db is not None:
            written[name] = per_call(partial(jobs.record_progress, db, JOB_ID, 1, 0.5), 500)
            rows.append(f"| a row write ({name}, conditional UPDATE, commit) | "
                        f"{written[name] * 1e3:.2f} ms |")  # fmt: skip
    return Costs(report, event, written["SQLite"]), rows


def interleaved(a: Callable[[], float], b: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Medians of `rounds` runs of each, alternating (first a warm-up of each)."""
    a(), b()
    first, second = [], []
    for _ in range(rounds):
        first.append(a())
        second.append(b())
    return statistics.median(first), statistics.median(second)


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def row(label: str, off: str, on: str, ratio: float, tally: Tally, estimate: float) -> str:
    return (f"| {label} | {off} | {on} | {ratio:.3f}× | {tally.reports} | {tally.events} | "
            f"{tally.rows} | {100 * estimate:.3f} % |")  # fmt: skip


def stairs_rows(redis: Any, db: Database, costs: Costs) -> list[str]:
    rows = []
    for label, n, steps, rounds in STAIRS:
        tallies: list[Tally] = []

        def without(n: int = n, steps: list[int] = steps) -> float:
            started = time.perf_counter()
            ways(n, steps)
            return time.perf_counter() - started

        def with_progress(
            n: int = n, steps: list[int] = steps, tallies: list[Tally] = tallies
        ) -> float:
            with reporting(redis, db) as (context, tally):
                started = time.perf_counter()
                ways(n, steps, None, context.progress)
                elapsed = time.perf_counter() - started
            tallies.append(tally)
            return elapsed

        on, off = interleaved(with_progress, without, rounds)
        tally = tallies[-1]
        rows.append(row(label, fmt(off), fmt(on), on / off, tally, tally.seconds(costs) / off))
        print(rows[-1], flush=True)
    return rows


def generate_rows(redis: Any, db: Database, costs: Costs) -> list[str]:
    rows = []
    for model, quantization, tokens, rounds in GENERATE:
        if model.endswith("-gguf") and not gguf_engine_installed():
            print(f"skipping {model}: llama.cpp is not installed (make gguf)")
            continue
        params = get("generate").parse(  # type: ignore[union-attr]
            {"prompt": "The history of the stairs begins", "model": model,
             "quantization": quantization, "max_new_tokens": tokens}, SETTINGS
        )  # fmt: skip
        tallies: list[Tally] = []

        def tokens_per_s(result: dict[str, Any]) -> float:
            return float(result["tokens"]["completion"] / result["timings"]["generate_s"])

        def with_progress(params: Any = params, tallies: list[Tally] = tallies) -> float:
            with reporting(redis, db) as (context, tally):
                result = run(params, context).result
            tallies.append(tally)
            return tokens_per_s(result)

        def without(params: Any = params) -> float:
            with silent_engine():
                return tokens_per_s(run(params, Silent(JOB_ID, SETTINGS, redis)).result)

        on, off = interleaved(with_progress, without, rounds)
        tally = tallies[-1]
        engine = "llama.cpp" if model.endswith("-gguf") else "transformers fp32"
        label = f"{model} on {engine}, {tokens} tokens"
        estimate = tally.seconds(costs) / (tokens / off)
        rows.append(row(label, f"{off:.1f} tokens/s", f"{on:.1f} tokens/s", off / on, tally,
                        estimate))  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    redis = streams.connect(BROKER_URL)
    with tempfile.TemporaryDirectory() as tmp, postgres_or_none() as postgres_url:
        sqlite = running_job(f"sqlite:///{tmp}/bench.db")
        postgres = running_job(postgres_url) if postgres_url else None
        costs, cost_rows = unit_costs(redis, sqlite, postgres)
        print("\n".join(cost_rows), flush=True)
        stairs = stairs_rows(redis, sqlite, costs)
        generate = generate_rows(redis, sqlite, costs)
        for db in (sqlite, postgres):
            if db is not None:
                db.engine.dispose()
    redis.delete(streams.stream_key(JOB_ID))
    head = "| reports | events | rows | estimated |\n| --- |" + " ---: |" * 7
    write_section(
        "Progress reporting's cost",
        f"""
{machine()}, {time.strftime("%Y-%m-%d")}, one process (`bench/progress.py`). Each piece alone:

| | cost |
| --- | ---: |
{chr(10).join(cost_rows)}

The same runs with a real RunContext's `progress` (events to Redis, the row of a running job
on SQLite) and without it, interleaved, medians. *Reports* counts the runner's calls in the
last run, *events* and *rows* what the throttle let out of them (an event at most every 0.25 s
and one a stage, the row at most once a second); *estimated* is what those cost at the prices
above, against the run's time: the measured ratio moves more than that from run to run here
(a first run of this bench beside a `pip install` read 1.41× for llama.cpp, 0.86× for stairs).

| stairs, exact (Kitamasa) | without | with | with / without {head}
{chr(10).join(stairs)}

| generate, greedy | without | with | slowdown {head}
{chr(10).join(generate)}
""",
    )


@contextmanager
def postgres_or_none() -> Iterator[str | None]:
    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
    except psycopg.Error as exc:
        print(f"PostgreSQL unavailable ({exc}); SQLite only")
        yield None
        return
    with scratch_database("ladder_bench_progress") as url:
        yield url


if __name__ == "__main__":
    main()
