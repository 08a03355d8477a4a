"""GGUF models at the API: a file that is not GGUF or was cut short is refused when its folder is
read, with the reason; so are what llama.cpp cannot do here, and a missing engine."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from scripts.convert_smollm2 import gguf_path
from shared import workers
from shared.config import Settings
from shared.db import Database
from shared.kinds import generate as generate_kind
from shared.model_registry import UnknownModel, resolve
from tests.support import ADMIN_TOKEN, job_count


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gguf-models")
    whole = gguf_path().read_bytes()
    for name, data in [("good", whole), ("cut", whole[: len(whole) // 2]),
                       ("header-cut", whole[:4096]), ("text", b"not a model\n" * 100)]:  # fmt: skip
        (root / name).mkdir()
        (root / name / "model.gguf").write_bytes(data)
    return root


@pytest.fixture
def app(settings: Settings, models: Path) -> Iterator[Flask]:
    app = create_app(dataclasses.replace(settings, models_dir=models))
    app.extensions["ladder"].redis = fakeredis.FakeRedis()
    yield app
    app.extensions["ladder"].db.engine.dispose()


def submit(client: FlaskClient, params: dict[str, Any], **extra: Any) -> Any:
    return client.post("/api/v1/jobs", json={"kind": "generate", "params": params, **extra},
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "cut",
            "the file is truncated: its tensors end at byte 98,362,432, the file has 49,181,216",
        ),
        ("header-cut", "ends inside its header: the file is truncated"),
        ("text", "not a GGUF file (it does not begin with 'GGUF')"),
    ],
)
def test_a_bad_gguf_file_is_refused_with_its_reason_and_nothing_is_queued(
    app: Flask, db: Database, models: Path, name: str, reason: str
) -> None:
    with pytest.raises(UnknownModel, match="cannot be served"):
        resolve(name, models)
    r = submit(app.test_client(), {"prompt": "Hi", "model": name})
    assert r.status_code == 422 and r.content_type == "application/problem+json"
    error = r.get_json()["errors"][0]
    assert error["field"] == "params.model" and reason in error["message"]
    assert job_count(db) == 0


def test_a_bad_gguf_file_is_left_out_of_the_model_list(app: Flask) -> None:
    listed = app.test_client().get("/v1/models", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert [m["id"] for m in listed.get_json()["data"]] == ["good"]


def test_a_gguf_model_runs_as_stored_and_on_the_cpu_only(app: Flask, db: Database) -> None:
    if not generate_kind.gguf_engine_installed():
        pytest.skip("llama.cpp is not installed: the engine's absence is refused first")
    client = app.test_client()
    r = submit(client, {"prompt": "Hi", "model": "good", "quantization": "int8"})
    assert r.status_code == 422
    assert r.get_json()["errors"][0] == {
        "field": "params.quantization",
        "message": "good is a GGUF file stored as Q4_1, which llama.cpp runs as stored: "
        "leave quantization auto",
    }
    workers.beat(app.extensions["ladder"].redis, "gpu0@test",
                 {"name": "gpu0@test", "pool": "gpu", "queues": ["gpu.generate"]})  # fmt: skip
    r = submit(client, {"prompt": "Hi", "model": "good"}, device="gpu")
    assert r.status_code == 422 and "CPU pool only" in r.get_json()["errors"][0]["message"]
    # auto passes the GPU by
    assert submit(client, {"prompt": "Hi", "model": "good"}).get_json()["queue"] == "cpu"
    assert job_count(db) == 1


def test_without_llama_cpp_a_gguf_model_is_refused_with_how_to_install_it(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generate_kind, "gguf_engine_installed", lambda: False)
    r = submit(app.test_client(), {"prompt": "Hi", "model": "good"})
    assert r.status_code == 422
    assert "`make gguf` builds it" in r.get_json()["errors"][0]["message"]


def test_a_gguf_file_replaced_by_a_whole_one_is_read_again(models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "swap"
    folder.mkdir()
    shutil.copyfile(models / "cut" / "model.gguf", folder / "model.gguf")
    with pytest.raises(UnknownModel):
        resolve("swap", tmp_path)
    shutil.copyfile(models / "good" / "model.gguf", folder / "model.gguf")
    assert resolve("swap", tmp_path).gguf_info().file_type == "Q4_1"
