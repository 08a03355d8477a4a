"""One typed settings object, read from the environment once by each process's entry point."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class StairsLimits:
    """How far `stairs` goes before a job is refused; each name appears in the error it causes."""

    max_n_fib: int = 10_000_000
    """Exact answers for steps [1, 2] (Fibonacci): F(10^7 + 1) has 2,089,877 digits."""
    max_n_exact: int = 1_000_000
    """Exact answers for any other step set."""
    max_n_modular: int = 10**18
    max_step: int = 50
    max_modulus: int = 10**18
    inline_digits: int = 100_000
    """Longer values are stored as the artifact value.txt instead of inline."""


@dataclass(frozen=True)
class AttentionLimits:
    """How much an `attention` job may ask for."""

    max_text_chars: int = 5_000
    max_tokens: int = 256
    """The cap on a text job's `max_tokens` (its default is 128)."""
    max_rows: int = 256
    """Matrices mode: the most rows of q (n) and of k and v (m)."""
    max_dim: int = 512
    """Matrices mode: the widest d (q, k) and d_v (v)."""
    inline_tokens: int = 64
    inline_pairs: int = 16
    """Attention matrices go inline in the result only up to these sizes; else the .npz."""
    max_top_k: int = 20


@dataclass(frozen=True)
class GenerateLimits:
    """How much a `generate` job may ask for."""

    max_new_tokens: int = 2_048
    max_prompt_chars: int = 32_000
    max_messages: int = 64
    max_stop: int = 4
    max_stop_chars: int = 64


@dataclass(frozen=True)
class Settings:
    """Everything configurable in Ladder: `from_env()` in entry points, overrides in tests."""

    database_url: str = "sqlite:///var/ladder.db"
    broker_url: str = "redis://127.0.0.1:6379/0"
    admin_token: str | None = None
    secret_key: str | None = None
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
    time_limits: Mapping[str, int] = field(
        default_factory=lambda: {"stairs": 120, "attention": 300, "generate": 900}
    )
    """Hard time limit per kind, seconds; a soft limit fires a few seconds earlier."""
    stairs: StairsLimits = field(default_factory=StairsLimits)
    attention: AttentionLimits = field(default_factory=AttentionLimits)
    generate: GenerateLimits = field(default_factory=GenerateLimits)
    default_generate_model: str = "smollm2"
    trust_remote_code: frozenset[str] = frozenset()
    """Model folders whose own Python code may run (ChatGLM-6B/2/3 need it); none by default."""
    models_dir: Path = Path("var/models")
    """One folder per model that clients may name; nothing is downloaded at run time."""
    model_cache_bytes: int = 4 * 1024**3
    """Each worker process keeps loaded models up to this many bytes of weights."""
    events_poll_seconds: float = 0.25

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
        ]:
            if var in env:
                values[name] = int(env[var])
        if env.get("LADDER_TRUST_REMOTE_CODE"):
            names = env["LADDER_TRUST_REMOTE_CODE"].split(",")
            values["trust_remote_code"] = frozenset(n.strip() for n in names if n.strip())
        if env.get("LADDER_DEFAULT_GENERATE_MODEL"):
            values["default_generate_model"] = env["LADDER_DEFAULT_GENERATE_MODEL"]
        kinds = [
            ("stairs", StairsLimits),
            ("attention", AttentionLimits),
            ("generate", GenerateLimits),
        ]
        for prefix, limits in kinds:
            given = {
                f.name: int(env[var])
                for f in dataclasses.fields(limits)
                if (var := f"LADDER_{prefix.upper()}_{f.name.upper()}") in env
            }
            if given:
                values[prefix] = limits(**given)
        time_limits = {
            var.removeprefix("LADDER_TIME_LIMIT_").lower(): int(value)
            for var, value in env.items()
            if var.startswith("LADDER_TIME_LIMIT_")
        }
        if time_limits:
            values["time_limits"] = {**cls().time_limits, **time_limits}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def time_limit(self, kind: str) -> int:
        return self.time_limits.get(kind, 60)

    @property
    def visibility_timeout(self) -> int:
        """Redis re-delivers an unacknowledged message after this many seconds."""
        if self.redelivery_after is not None:
            return self.redelivery_after
        return 2 * max(self.time_limits.values(), default=60) + 60
