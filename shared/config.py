"""One typed settings object, read from the environment once by each process's entry point."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DAY = 86_400
UNITS = {"s": 1, "m": 60, "h": 3_600, "d": DAY}


# ASCII digits only: str.isdigit() also takes "²" and "٣", which int() then refuses or reads.
DURATION = re.compile(r"([0-9]+)([smhd]?)")
LONGEST = 100 * 365 * DAY
"""The longest duration taken: past it a date falls off the calendar; `0` keeps forever."""


def parse_duration(text: str) -> int:
    """Seconds in `7d`, `12h`, `30m`, `45s` or plain `3600`; `0` is zero (keep forever)."""
    found = DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 30m, 45s or 0")
    seconds = int(found[1]) * UNITS[found[2] or "s"]
    if seconds > LONGEST:
        raise ValueError(f"{text!r} is longer than 100 years (0 keeps forever)")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest form `parse_duration` reads back: 604800 is `7d`, 90 is `90s`, 0 is `0`."""
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(seconds)


def _duration(env: Mapping[str, str], var: str) -> int:
    try:
        return parse_duration(env[var])
    except ValueError as exc:
        raise ValueError(f"{var}: {exc}") from None


def default_retention() -> dict[str, int]:
    return {"succeeded": 7 * DAY, "failed": 30 * DAY, "cancelled": 7 * DAY}


@dataclass(frozen=True)
class Settings:
    """Everything configurable in Ladder: `from_env()` in entry points, overrides in tests."""

    database_url: str = "sqlite:///var/ladder.db"
    broker_url: str = "redis://127.0.0.1:6379/0"
    admin_token: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    """Signs the dashboard's session cookie: required by the API, independent of any token
    (`make run` makes one and keeps it in var/secret-key, which is read when the variable is
    unset)."""
    metrics_token: str | None = field(default=None, repr=False)
    """When set, `/metrics` wants it as a bearer token."""
    trusted_proxies: int = 0
    """Proxies in front of the API whose X-Forwarded-For/-Proto/-Host are believed."""
    local_only: bool = False
    """The API listens on this machine's loopback only (`make run` says so): a short admin
    token is then taken, with a warning, instead of refused."""
    auth_failures_per_minute: int = 10
    """Failed sign-ins and unknown bearer tokens one client address may send a minute."""
    retention: Mapping[str, int] = field(default_factory=default_retention)
    """Seconds an ended job is kept after it ended, by status; 0 keeps it forever."""
    purge_every: int = 60
    """Seconds between retention purges (one at a time across all workers); 0 turns them off."""
    purge_batch: int = 500
    """Jobs deleted per transaction by the purge, so that no lock is held for long."""
    max_active_jobs_per_key: int = 1_000
    """Queued and running jobs one key may have; past it, 429. A key may say otherwise; 0
    turns the limit off."""
    max_priority: int = 5
    """The highest priority a non-admin key may ask for; a key may say otherwise."""
    max_inline_result_bytes: int = 256 * 1024
    """A larger result (as JSON) is stored as the artifact `result.json`, not in the row."""
    max_body_bytes: int = 1_048_576
    max_artifact_bytes: int = 16 * 1_048_576
    rate_limit: int = 6_000
    """Requests a minute per API key; past it, 429 until the next minute. 0 turns it off."""
    reconcile_after: int = 60
    """Seconds before a queued job missing from Redis, or a dead worker's job, is sent again."""
    redelivery_after: int | None = None
    """Redis' visibility timeout, seconds; by default longer than any time limit. Leases keep
    a job from running twice even when it is shorter (see worker.leases)."""
    max_attempts: int = 3
    """A job whose worker dies this many times fails with `worker_lost`."""
    page_limit: int = 100
    time_limits: Mapping[str, int] = field(default_factory=dict)
    """Hard time limits by kind, seconds, over each kind's own; a soft limit fires a little
    earlier."""
    limits: Mapping[str, Any] = field(default_factory=dict)
    """Limits objects by kind, replacing each kind's defaults (tests set these)."""
    # Not in repr, as the secrets above: it holds them too, and reprs end up in logs.
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The LADDER_* variables read, where each kind finds its `LADDER_<KIND>_<NAME>` limits."""
    default_generate_model: str = "smollm2"
    trust_remote_code: frozenset[str] = frozenset()
    """Model folders whose own Python code may run (ChatGLM-6B/2/3 need it); none by default."""
    models_dir: Path = Path("var/models")
    """One folder per model that clients may name; nothing is downloaded at run time."""
    model_cache_bytes: int = 4 * 1024**3
    """Each worker process keeps loaded models up to this many bytes of weights."""
    task_events: bool = False
    """Whether workers send Celery's task events (for Flower and `celery events`)."""
    max_streams_per_key: int = 64
    """Requests one key may hold open waiting on jobs: event streams, long polls, chats."""
    max_stream_seconds: int = 900
    """An event stream's longest life; then the client is told to resume with Last-Event-ID."""
    webhook_allow_private: bool = False
    """Whether a `callback_url` may reach loopback, private, link-local and CGNAT addresses
    (a receiver on the same network); cloud metadata addresses are refused whatever it says."""
    webhook_first_retry: int = 30
    """Seconds before a failed webhook delivery is tried again; each wait after doubles, up to
    an hour."""
    webhook_retry_for: int = DAY
    """Seconds after a job ended during which its webhook is retried; then it is given up."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read the environment (or `env`) once; unset variables keep the defaults."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        var_dir = Path(env.get("LADDER_VAR_DIR", "var"))
        values["database_url"] = env.get("DATABASE_URL", f"sqlite:///{var_dir}/ladder.db")
        if "BROKER_URL" in env:
            values["broker_url"] = env["BROKER_URL"]
        if env.get("LADDER_ADMIN_TOKEN"):
            values["admin_token"] = env["LADDER_ADMIN_TOKEN"]
        for name, var in [
            ("secret_key", "LADDER_SECRET_KEY"),
            ("metrics_token", "LADDER_METRICS_TOKEN"),
        ]:
            if env.get(var):
                values[name] = env[var]
        retention = default_retention()
        for status in retention:
            var = f"LADDER_RETENTION_{status.upper()}"
            if env.get(var):
                retention[status] = _duration(env, var)
        values["retention"] = retention
        kept = var_dir / "secret-key"
        if "secret_key" not in values and kept.is_file():
            # What `make run` made, so that `flask --app api keys …` beside it needs no variable.
            values["secret_key"] = kept.read_text().strip()
        values["models_dir"] = Path(env.get("LADDER_MODELS_DIR", str(var_dir / "models")))
        for name, var in [
            ("max_body_bytes", "LADDER_MAX_BODY_BYTES"),
            ("max_artifact_bytes", "LADDER_MAX_ARTIFACT_BYTES"),
            ("max_attempts", "LADDER_MAX_ATTEMPTS"),
            ("rate_limit", "LADDER_RATE_LIMIT"),
            ("reconcile_after", "LADDER_RECONCILE_AFTER"),
            ("redelivery_after", "LADDER_REDELIVERY_AFTER"),
            ("model_cache_bytes", "LADDER_MODEL_CACHE_BYTES"),
            ("max_streams_per_key", "LADDER_MAX_STREAMS_PER_KEY"),
            ("max_stream_seconds", "LADDER_MAX_STREAM_SECONDS"),
            ("trusted_proxies", "LADDER_TRUSTED_PROXIES"),
            ("auth_failures_per_minute", "LADDER_AUTH_FAILURES_PER_MINUTE"),
            ("purge_batch", "LADDER_PURGE_BATCH"),
            ("max_active_jobs_per_key", "LADDER_MAX_ACTIVE_JOBS_PER_KEY"),
            ("max_priority", "LADDER_MAX_PRIORITY"),
            ("max_inline_result_bytes", "LADDER_MAX_INLINE_RESULT_BYTES"),
        ]:
            if var in env:
                values[name] = int(env[var])
        for name, var in [
            ("purge_every", "LADDER_PURGE_EVERY"),
            ("webhook_first_retry", "LADDER_WEBHOOK_FIRST_RETRY"),
            ("webhook_retry_for", "LADDER_WEBHOOK_RETRY_FOR"),
        ]:
            if env.get(var):
                values[name] = _duration(env, var)
        if env.get("LADDER_WEBHOOK_ALLOW_PRIVATE"):
            allow = env["LADDER_WEBHOOK_ALLOW_PRIVATE"].lower() in ("1", "true", "yes")
            values["webhook_allow_private"] = allow
        if env.get("LADDER_TRUST_REMOTE_CODE"):
            names = env["LADDER_TRUST_REMOTE_CODE"].split(",")
            values["trust_remote_code"] = frozenset(n.strip() for n in names if n.strip())
        if env.get("LADDER_LOCAL_ONLY"):
            values["local_only"] = env["LADDER_LOCAL_ONLY"].lower() in ("1", "true", "yes")
        if env.get("LADDER_TASK_EVENTS"):
            values["task_events"] = env["LADDER_TASK_EVENTS"].lower() in ("1", "true", "yes")
        if env.get("LADDER_DEFAULT_GENERATE_MODEL"):
            values["default_generate_model"] = env["LADDER_DEFAULT_GENERATE_MODEL"]
        values["env"] = {var: value for var, value in env.items() if var.startswith("LADDER_")}
        time_limits = {
            var.removeprefix("LADDER_TIME_LIMIT_").lower(): int(value)
            for var, value in env.items()
            if var.startswith("LADDER_TIME_LIMIT_")
        }
        if time_limits:
            values["time_limits"] = time_limits
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
