"""docker-compose.yml is valid against the Compose specification and never defaults a secret."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support import need

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"POSTGRES_PASSWORD": "pw", "LADDER_ADMIN_TOKEN": "token", "LADDER_SECRET_KEY": "key"}


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
    assert services["api"]["command"][:3] == ["gunicorn", "-c", "gunicorn.conf.py"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    worker = ["python", "-m", "scripts.processes", "worker", "cpu"]
    assert services["worker-cpu"]["command"] == worker
    assert services["api"]["environment"]["LADDER_ADMIN_TOKEN"] == "token"
    assert services["api"]["environment"]["LADDER_SECRET_KEY"] == "key"


def test_production_services_are_durable_and_the_optional_ones_opt_in() -> None:
    services = yaml.safe_load(compose_config(SECRETS).stdout)["services"]
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1]
    assert "/data" in _volume_targets(services["redis"])
    assert "/var/lib/postgresql/data" in _volume_targets(services["postgres"])
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    api_env = {**_dockerfile_env(), **services["api"]["environment"]}
    assert int(api_env["WEB_CONCURRENCY"]) >= 2  # API processes
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
    assert "gunicorn.conf.py" in _dockerfile_copies()
    flower = services["flower"]
    assert flower["profiles"] == ["flower"]
    assert all(str(p).startswith("127.0.0.1:") for p in _ports(flower))  # not on the network


def test_the_api_runs_on_an_image_without_torch_and_the_workers_on_theirs() -> None:
    services = yaml.safe_load(compose_config(SECRETS).stdout)["services"]
    stages = _dockerfile_stages()
    targets = {name: service["build"]["target"] for name, service in services.items()
               if "build" in service}  # fmt: skip
    assert targets == {"migrate": "api", "api": "api", "worker-cpu": "worker",
                       "worker-generate": "worker", "worker-gpu": "worker"}  # fmt: skip
    assert set(targets.values()) <= set(stages)
    assert services["worker-gpu"]["build"]["args"] == {"LADDER_DEVICE": "gpu"}
    assert "args" not in services["worker-cpu"]["build"]  # the CPU wheel, by default
    # The API's stage installs requirements-api.txt alone; the workers' installs torch and
    # converts the default models, for the device the build argument names (cpu by default).
    assert "scripts/install-api.sh" in stages["api"]
    assert "install-worker.sh" not in stages["api"]
    assert "ARG LADDER_DEVICE=cpu" in stages["worker-deps"]
    assert 'scripts/install-worker.sh /opt/ladder "$LADDER_DEVICE" /models' in stages["worker-deps"]
    assert stages["worker"].startswith("FROM worker-deps AS worker")
    assert list(stages)[-1] == "api"  # a plain `docker build .` makes the API's image
    env = _dockerfile_env()
    assert env["LADDER_MODELS_DIR"] == "/models"  # where install-worker.sh converted them
    assert env["PATH"].startswith("/opt/ladder/bin:")  # the venv the scripts install into


def test_the_image_serves_the_api_on_every_interface_of_the_container() -> None:
    env = _dockerfile_env()
    assert env["HOST"] == "0.0.0.0" and env["PORT"] == "8000"
    assert "EXPOSE 8000" in (ROOT / "Dockerfile").read_text()


def _dockerfile_env() -> dict[str, str]:
    """KEY=VALUE pairs of the Dockerfile's ENV lines."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    pairs = [p for line in lines if line.startswith("ENV ") for p in line.split()[1:]]
    return dict(p.split("=", 1) for p in pairs)


def _dockerfile_stages() -> dict[str, str]:
    """Each named stage of the Dockerfile, its FROM line to the next one, in order."""
    stages: dict[str, str] = {}
    name = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            name = line.split()[-1]
            stages[name] = ""
        if name:
            stages[name] += line + "\n"
    return stages


def _dockerfile_copies() -> list[str]:
    """What the Dockerfile's COPY lines copy (sources and destinations)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    return [word for line in lines if line.startswith("COPY ") for word in line.split()[1:]]


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
