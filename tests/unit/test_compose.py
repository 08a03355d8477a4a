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


def test_production_services_are_durable_and_the_optional_ones_opt_in() -> None:
    services = yaml.safe_load(compose_config(SECRETS).stdout)["services"]
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1]
    assert "/data" in _volume_targets(services["redis"])
    assert "/var/lib/postgresql/data" in _volume_targets(services["postgres"])
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    api = services["api"]["command"]
    assert int(api[api.index("--workers") + 1]) >= 2
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert "ports" not in services["worker-cpu"]  # scalable with --scale: no fixed host port
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and "scripts/gpu_workers.py" in gpu["command"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert (ROOT / "scripts" / "gpu_workers.py").exists()
    assert "COPY scripts scripts" in (ROOT / "Dockerfile").read_text()
    flower = services["flower"]
    assert flower["profiles"] == ["flower"]
    assert all(str(p).startswith("127.0.0.1:") for p in _ports(flower))  # not on the network


def _volume_targets(service: dict[str, Any]) -> list[str]:
    return [v.split(":")[1] if isinstance(v, str) else v["target"] for v in
            service.get("volumes", [])]  # fmt: skip


def _ports(service: dict[str, Any]) -> list[str]:
    return [p if isinstance(p, str) else f"{p.get('host_ip')}:{p.get('published')}" for p in
            service.get("ports", [])]  # fmt: skip


def test_secrets_are_required_not_defaulted() -> None:
    for missing in SECRETS:
        env = {k: v for k, v in SECRETS.items() if k != missing}
        result = compose_config(env)
        assert result.returncode != 0
        assert missing in result.stderr
