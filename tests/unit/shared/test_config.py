from __future__ import annotations

from pathlib import Path

import pytest

from shared import kinds, producer
from shared.config import DAY, Settings, format_duration, parse_duration


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


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * DAY), ("12h", 43_200), ("30m", 1_800), ("45s", 45), ("3600", 3_600),
     (" 2D ", 2 * DAY), ("0", 0), ("0d", 0), ("36500d", 36_500 * DAY)],
)  # fmt: skip
def test_durations_read(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", " ", "d", "7w", "-1d", "1.5h", "7 d", "7dd", "1e3", "²", "٣d", "7d\n7d", "36501d"]
)
def test_a_bad_duration_says_what_it_wants(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration such as 7d|longer than 100 years"):
        parse_duration(text)


def test_a_bad_duration_in_the_environment_names_its_variable() -> None:
    with pytest.raises(ValueError, match="LADDER_RETENTION_FAILED: '30 days' is not a duration"):
        Settings.from_env({"LADDER_RETENTION_FAILED": "30 days"})
    with pytest.raises(ValueError, match="LADDER_PURGE_EVERY"):
        Settings.from_env({"LADDER_PURGE_EVERY": "-5"})


def test_retention_defaults_and_overrides() -> None:
    assert dict(Settings.from_env({}).retention) == {
        "succeeded": 7 * DAY, "failed": 30 * DAY, "cancelled": 7 * DAY,
    }  # fmt: skip
    settings = Settings.from_env(
        {"LADDER_RETENTION_SUCCEEDED": "12h", "LADDER_RETENTION_CANCELLED": "0",
         "LADDER_PURGE_EVERY": "5m", "LADDER_PURGE_BATCH": "100"}
    )  # fmt: skip
    assert dict(settings.retention) == {"succeeded": 43_200, "failed": 30 * DAY, "cancelled": 0}
    assert (settings.purge_every, settings.purge_batch) == (300, 100)


@pytest.mark.parametrize("seconds", [0, 1, 45, 60, 90, 3_600, 5_400, DAY, 7 * DAY, DAY + 1])
def test_durations_print_as_they_read(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(7 * DAY) == "7d" and format_duration(5_400) == "90m"


def test_the_secret_key_make_run_kept_is_read_when_the_variable_is_unset(tmp_path: Path) -> None:
    assert Settings.from_env({"LADDER_VAR_DIR": str(tmp_path)}).secret_key is None
    (tmp_path / "secret-key").write_text("k" * 43 + "\n")
    assert Settings.from_env({"LADDER_VAR_DIR": str(tmp_path)}).secret_key == "k" * 43
    given = {"LADDER_VAR_DIR": str(tmp_path), "LADDER_SECRET_KEY": "s" * 40}
    assert Settings.from_env(given).secret_key == "s" * 40
