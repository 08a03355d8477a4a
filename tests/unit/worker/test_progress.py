"""Progress: throttled on its way to followers and to the row, only rising, never written once
the job has ended; and what each kind reports as it runs."""

from __future__ import annotations

import itertools
import math
import threading
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from redis import exceptions as redis_exceptions
from sqlalchemy.exc import OperationalError

from shared import jobs, streams
from shared.config import Settings
from shared.db import Database
from shared.kinds import get
from shared.kinds.generate import gguf_engine_installed
from shared.models import JobStatus, utcnow
from tests.support import add_job, need, oracle
from worker import progress
from worker.app import LadderCelery
from worker.context import RunContext
from worker.execute import execute
from worker.kinds import stairs
from worker.kinds.attention import text
from worker.kinds.generate import batch, run
from worker.model_cache import Loaded
from worker.progress import Progress, ignore

JOB = "00000000-0000-4000-8000-000000000001"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A `Report` that keeps what it hears."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str | None, dict[str, Any]]] = []

    def __call__(self, fraction: float, stage: str | None = None, **detail: Any) -> None:
        self.calls.append((fraction, stage, detail))

    @property
    def fractions(self) -> list[float]:
        return [fraction for fraction, _, _ in self.calls]


def sent(redis: Any, job_id: str = JOB) -> list[dict[str, Any]]:
    return [
        data for _, event, data in streams.read(redis, job_id, "0", None) if event == "progress"
    ]


def rising(values: list[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def running_job(db: Database, attempts: int = 1) -> str:
    return add_job(db, status=JobStatus.RUNNING, attempts=attempts, started_at=utcnow())


def row_progress(db: Database, job_id: str) -> float:
    found = jobs.find(db, job_id)
    assert found is not None
    return found.progress


# The throttle


def test_events_go_out_a_few_times_a_second_and_at_each_new_stage() -> None:
    # Given a job's progress, just started
    redis, clock = fakeredis.FakeRedis(), Clock()
    tracker = Progress(redis, None, JOB, 1, clock)
    # When a runner reports 256 times a second for two seconds, in two stages
    for tick in range(1, 513):
        clock.now += 1 / 256
        tracker.report(tick / 512, "first" if tick < 300 else "second", tick=tick)
    # Then an event went out when each stage began, and otherwise at most every 0.25 s
    events = sent(redis)
    assert [e["tick"] for e in events] == [1, 65, 129, 193, 257, 300, 364, 428, 492]
    assert [e["stage"] for e in events] == ["first"] * 5 + ["second"] * 4
    assert [e["progress"] for e in events] == [round(e["tick"] / 512, 4) for e in events]


def test_a_short_job_sends_nothing() -> None:
    redis, clock = fakeredis.FakeRedis(), Clock()
    tracker = Progress(redis, None, JOB, 1, clock)
    for step in range(1, 200):
        clock.now += 0.001
        tracker.report(step / 200)
    assert sent(redis) == []


def test_the_row_is_written_at_most_once_a_second(db: Database) -> None:
    # Given a running job
    job_id = running_job(db)
    clock = Clock()
    tracker = Progress(fakeredis.FakeRedis(), db, job_id, 1, clock)
    # When its runner reports every eighth of a second for three and a half seconds
    seen = []
    for tick in range(1, 29):
        clock.now += 1 / 8
        tracker.report(tick / 100)
        seen.append(row_progress(db, job_id))
    # Then the row changed once a second, to what the runner had said by then
    changed = [tick for tick, (a, b) in enumerate(itertools.pairwise([0.0, *seen]), 1) if a != b]
    assert changed == [8, 16, 24]
    assert [seen[tick - 1] for tick in changed] == [0.08, 0.16, 0.24]


def test_progress_only_rises_and_stays_within_0_and_1(db: Database) -> None:
    job_id = running_job(db)
    redis, clock = fakeredis.FakeRedis(), Clock()
    tracker = Progress(redis, db, job_id, 1, clock)
    for fraction in [0.3, 0.2, -1.0, math.nan, 0.5, 0.4, 7.0, 0.9]:
        clock.now += 1.0
        tracker.report(fraction)
    values = [e["progress"] for e in sent(redis, job_id)]
    assert values == [0.3, 0.5, 1.0]
    assert tracker.fraction == 1.0 and row_progress(db, job_id) == 1.0


@pytest.mark.parametrize("ending", ["succeeded", "cancelled", "failed", "retried elsewhere"])
def test_a_job_that_ended_keeps_its_row(db: Database, ending: str) -> None:
    # Given a running job whose row this attempt wrote once
    job_id = running_job(db)
    clock = Clock()
    tracker = Progress(fakeredis.FakeRedis(), db, job_id, 1, clock)
    clock.now += 1.0
    tracker.report(0.25)
    assert row_progress(db, job_id) == 0.25
    # When the job ends (or another attempt takes it), and the runner still reports
    if ending == "succeeded":
        assert jobs.finish(db, job_id, 1, JobStatus.SUCCEEDED, result={})
    elif ending == "cancelled":
        assert jobs.cancel(db, job_id)
    elif ending == "failed":
        assert jobs.fail_running(db, job_id, jobs.error("timeout", "too long"))
    else:
        assert jobs.claim(db, job_id, "another@host", 3) is not None
    before = jobs.find(db, job_id)
    for _ in range(3):
        clock.now += 1.0
        tracker.report(tracker.fraction + 0.2)
    # Then the row is as the end left it, and the attempt has stopped writing to it
    after = jobs.find(db, job_id)
    assert before is not None and after is not None
    assert (after.status, after.progress, after.attempts) == (
        before.status,
        before.progress,
        before.attempts,
    )
    kept = {"succeeded": 1.0, "cancelled": 0.25, "failed": 0.25, "retried elsewhere": 0.0}
    assert after.progress == kept[ending]
    assert not tracker.row_open


class Unreachable:
    """A Redis or a database that is away."""

    def pipeline(self, transaction: bool = True) -> Any:
        raise redis_exceptions.ConnectionError("Redis is away (a test's)")

    def session(self) -> Any:
        raise OperationalError("UPDATE", {}, Exception("the database is away (a test's)"))


def test_redis_or_the_database_away_fails_nothing() -> None:
    away: Any = Unreachable()
    clock = Clock()
    tracker = Progress(away, away, JOB, 1, clock)
    for step in range(1, 5):
        clock.now += 1.0
        tracker.report(step / 10, f"stage {step}")
    assert tracker.fraction == 0.4 and tracker.written == 0.0 and tracker.row_open


# What each kind reports


@pytest.fixture
def every_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every report goes out at once, and Kitamasa reports from its first step."""
    monkeypatch.setattr(progress, "EVENT_SECONDS", 0.0)
    monkeypatch.setattr(progress, "ROW_SECONDS", 0.0)
    monkeypatch.setattr(stairs, "QUIET_SECONDS", -1.0)


@pytest.mark.parametrize("modulus", [None, 1_000_000_007])
def test_kitamasa_reports_each_row_of_each_squaring(
    every_report: None, modulus: int | None
) -> None:
    steps = [1, 3, 4, 7]
    heard = Recorder()
    value = stairs.ways(5_000, steps, modulus, heard)
    assert value == oracle(5_000, steps, modulus)
    fractions = heard.fractions
    bits = (5_000).bit_length()
    assert len(fractions) == bits * 7  # a report after each row of each squaring
    assert rising(fractions)
    assert fractions[0] > 0 and fractions[-1] == pytest.approx(1.0)
    assert {stage for _, stage, _ in heard.calls} == {"kitamasa"}
    assert heard.calls[-1][2] == {"step": bits, "steps": bits}


def test_an_exact_run_weighs_its_late_squarings_most(every_report: None) -> None:
    heard = Recorder()
    stairs.ways(4_096, [1, 2, 3], None, heard)  # 13 bits: the exponent doubles each step
    ends = [fraction for fraction, _, d in heard.calls if d["step"] < 13][2::3]
    # The last squaring of an exact run costs more than all the others together.
    assert ends[-1] == pytest.approx(0.5**stairs.SQUARING_COST)


def test_a_short_stairs_run_reports_nothing() -> None:
    heard = Recorder()
    stairs.ways(100_000, [1, 2, 3], None, heard)
    stairs.ways(10**18, list(range(1, 21)), 10**9 + 7, heard)
    assert heard.calls == []


def test_a_stairs_job_tells_its_followers_then_ends_at_one(
    app: LadderCelery, every_report: None
) -> None:
    # Given a queued stairs job with a step set that takes Kitamasa's path
    job_id = add_job(app.db, params={"n": 3_000, "steps": [1, 2, 5], "modulus": None})
    # When a worker runs it
    execute(app, job_id, "cpu-1@host", None)
    # Then its progress events rose, in order, before the status that ended it
    entries = streams.read(app.redis, job_id, "0", None)
    names = [event for _, event, _ in entries]
    values = [data["progress"] for _, event, data in entries if event == "progress"]
    assert len(values) == 12 * 5 and values == sorted(values)
    assert names.index("progress") > names.index("status")  # after `running`
    assert names[-1] == "status" and entries[-1][2]["status"] == JobStatus.SUCCEEDED
    assert row_progress(app.db, job_id) == 1.0


def parse(kind: str, given: dict[str, Any], settings: Settings) -> Any:
    found = get(kind)
    assert found is not None
    return found.parse(given, settings)


def attention(settings: Settings, **given: Any) -> Any:
    return parse("attention", {"model": "tiny-bert", **given}, settings).root


@pytest.mark.parametrize("matrices", [False, True])
def test_attention_reports_each_layer_then_each_stage(
    tiny_bert: Loaded, models_dir: Path, matrices: bool
) -> None:
    settings = Settings(models_dir=models_dir)
    heard = Recorder()
    p = attention(settings, text="Climb the stairs.", return_matrices=matrices)
    text.analyse_text(p, tiny_bert, settings, ignore)  # transformers adds hooks of its own
    layers = text._layer_stack(tiny_bert.model)
    before = [dict(layer._forward_hooks) for layer in layers]
    text.analyse_text(p, tiny_bert, settings, heard)
    stages = [stage for _, stage, _ in heard.calls]
    expected = ["forward", "forward", "statistics", "heatmap", "rollout"]
    assert stages == [*expected, *(["matrices"] if matrices else []), "explorer"]
    assert [d for _, s, d in heard.calls if s == "forward"] == [
        {"layer": 0, "layers": 2},
        {"layer": 1, "layers": 2},
    ]
    fractions = heard.fractions
    assert rising(fractions)
    assert fractions[0] > 0 and fractions[-1] < 1
    # The cached model keeps no hook of the job's.
    assert [dict(layer._forward_hooks) for layer in layers] == before


def test_layer_hooks_speak_only_for_their_own_thread(tiny_bert: Loaded) -> None:
    heard = Recorder()
    encoding = tiny_bert.tokenizer("Another job's text.", return_tensors="pt")
    with text._layers_reported(tiny_bert.model, heard):
        other = threading.Thread(target=lambda: tiny_bert.model(**encoding))
        other.start()
        other.join()
    assert heard.calls == []


def generate_events(
    settings: Settings, model: str, max_new_tokens: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A generate job's result and its progress events, every report going out."""
    monkeypatch.setattr(progress, "EVENT_SECONDS", 0.0)
    monkeypatch.setattr(batch, "REPORT_SECONDS", 0.005)
    redis = fakeredis.FakeRedis()
    params = parse(
        "generate", {"prompt": "Climb", "model": model, "max_new_tokens": max_new_tokens}, settings
    )
    result = run(params, RunContext("gen", settings, redis)).result
    return result, sent(redis, "gen")


def check_generate_events(result: dict[str, Any], events: list[dict[str, Any]], limit: int) -> None:
    assert len(events) >= 3, events
    tokens = [e["tokens"] for e in events]
    assert tokens == sorted(set(tokens)) and tokens[-1] <= result["tokens"]["completion"]
    for e in events:
        assert e["stage"] == "generating" and e["max_tokens"] == limit
        assert e["progress"] == pytest.approx(e["tokens"] / limit, abs=1e-4)


def test_generate_reports_its_tokens_out_of_max_new_tokens(
    tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(models_dir=tiny_models)
    result, events = generate_events(settings, "tiny-glm4", 400, monkeypatch)
    assert result["finish_reason"] == "length"
    check_generate_events(result, events, 400)


def test_the_gguf_engine_reports_its_tokens_too(
    tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not gguf_engine_installed():
        need("llama.cpp", "`make gguf` builds it into .venv (CI does)")
    settings = Settings(models_dir=tiny_models)
    result, events = generate_events(settings, "smollm2-gguf", 48, monkeypatch)
    check_generate_events(result, events, 48)
