from __future__ import annotations

from shared import kinds, producer
from shared.config import Settings


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///var/ladder.db"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.admin_token is None
    longest = max(kind.time_limit_for(settings) for kind in kinds.enabled().values())
    assert producer.visibility_timeout(settings) > longest


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://db/ladder",
            "BROKER_URL": "redis://broker:6379/1",
            "LADDER_ADMIN_TOKEN": "t",
            "LADDER_VAR_DIR": "/srv/ladder",
            "LADDER_STAIRS_MAX_N_EXACT": "1000",
            "LADDER_TIME_LIMIT_STAIRS": "7",
        }
    )
    assert settings.database_url == "postgresql+psycopg://db/ladder"
    assert settings.broker_url == "redis://broker:6379/1"
    assert settings.admin_token == "t"
    stairs = kinds.get("stairs")
    assert stairs is not None
    assert stairs.limits(settings).max_n_exact == 1000
    assert stairs.limits(settings).max_n_fib == 10_000_000
    assert producer.time_limit(settings, "stairs") == 7
    assert producer.time_limit(settings, "generate") == 900
    assert producer.visibility_timeout(settings) > 900


def test_var_dir_moves_the_default_database() -> None:
    assert (
        Settings.from_env({"LADDER_VAR_DIR": "/tmp/x"}).database_url == "sqlite:////tmp/x/ladder.db"
    )
