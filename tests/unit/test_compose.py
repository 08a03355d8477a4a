"""docker-compose.yml is valid against the Compose specification and never defaults a secret."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"POSTGRES_PASSWORD": "pw", "LADDER_ADMIN_TOKEN": "token"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    if tool is None:
        need("docker-compose", "Debian's docker-compose validates files against the Compose spec")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [str(tool), "-f", str(ROOT / "docker-compose.yml"), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_is_valid_and_has_the_services() -> None:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"redis", "postgres", "migrate", "api", "worker-cpu"} <= set(services)
    assert "gunicorn" in services["api"]["command"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["worker-cpu"]["command"][:4] == ["celery", "-A", "worker", "worker"]
    assert services["api"]["environment"]["LADDER_ADMIN_TOKEN"] == "token"


def test_secrets_are_required_not_defaulted() -> None:
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        result = compose_config(env)
        assert result.returncode != 0
        assert missing in result.stderr
