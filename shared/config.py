"""One typed settings object, read from the environment once by each process's entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Everything configurable in Ladder: `from_env()` in entry points, overrides in tests."""

    database_url: str = "sqlite:///var/ladder.db"
    broker_url: str = "redis://127.0.0.1:6379/0"
    admin_token: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    """Signs the dashboard's session cookie; by default derived from the admin token."""
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
        if env.get("LADDER_SECRET_KEY"):
            values["secret_key"] = env["LADDER_SECRET_KEY"]
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
        ]:
            if var in env:
                values[name] = int(env[var])
        if env.get("LADDER_TRUST_REMOTE_CODE"):
            names = env["LADDER_TRUST_REMOTE_CODE"].split(",")
            values["trust_remote_code"] = frozenset(n.strip() for n in names if n.strip())
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
