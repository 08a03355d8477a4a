"""Submitting `generate` jobs: validation, routing by live pools, and the OpenAI front's checks."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared import workers
from shared.db import Database
from tests.support import job_count

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def submit(client: FlaskClient, user: dict[str, str], params: Any, **extra: Any) -> Any:
    body = {"kind": "generate", "params": params, **extra}
    return client.post("/api/v1/jobs", json=body, headers=user)


def gpu_online(app: Flask, queue: str = "gpu.generate") -> None:
    info = {"name": "gpu0@test", "pool": "gpu", "queues": [queue]}
    workers.beat(app.extensions["ladder"].redis, "gpu0@test", info)


def test_a_chat_goes_to_the_cpu_pool_when_no_gpu_worker_is_online(
    client: FlaskClient, user: dict[str, str]
) -> None:
    r = submit(client, user, {"messages": ASK})
    assert r.status_code == 202
    job = r.get_json()
    assert job["queue"] == "cpu" and job["params"]["max_new_tokens"] == 128
    assert job["params"]["quantization"] == "auto"


def test_a_gpu_worker_that_serves_only_the_gpu_queue_does_not_take_generations(
    app: Flask, client: FlaskClient, user: dict[str, str]
) -> None:
    gpu_online(app, queue="gpu")  # an attention worker: generate jobs wait in gpu.generate
    assert submit(client, user, {"prompt": "Hi"}).get_json()["queue"] == "cpu"


def test_auto_goes_to_the_gpu_pool_when_a_gpu_worker_beats(
    app: Flask, client: FlaskClient, user: dict[str, str]
) -> None:
    gpu_online(app)
    assert submit(client, user, {"prompt": "Hi"}).get_json()["queue"] == "gpu"
    r = submit(client, user, {"prompt": "Hi", "quantization": "fp16"}, device="gpu")
    assert r.status_code == 202 and r.get_json()["queue"] == "gpu"
    assert submit(client, user, {"prompt": "Hi"}, device="cpu").get_json()["queue"] == "cpu"
    # A GPU cannot run fp32 here: auto sends that job to the CPU pool instead.
    assert (
        submit(client, user, {"prompt": "Hi", "quantization": "fp32"}).get_json()["queue"] == "cpu"
    )


def test_a_gpu_asked_for_with_none_online_is_refused_not_left_waiting(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    r = submit(client, user, {"prompt": "Hi"}, device="gpu")
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["field"] == "device"
    assert "no GPU worker" in r.get_json()["errors"][0]["message"]
    assert job_count(db) == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "params"),
        ({"prompt": "a", "messages": ASK}, "params"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "params"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, "params.messages.0.role"),
        ({"messages": []}, "params.messages"),
        ({"prompt": "x" * 32_001}, "params.prompt"),
        ({"prompt": "a", "max_new_tokens": 2049}, "params.max_new_tokens"),
        ({"prompt": "a", "max_new_tokens": 0}, "params.max_new_tokens"),
        ({"prompt": "a", "temperature": -1}, "params.temperature"),
        ({"prompt": "a", "top_p": 0}, "params.top_p"),
        ({"prompt": "a", "seed": -1}, "params.seed"),
        ({"prompt": "a", "stop": ["1", "2", "3", "4", "5"]}, "params.stop"),
        ({"prompt": "a", "stop": [""]}, "params.stop.0"),
        ({"prompt": "a", "quantization": "int3"}, "params.quantization"),
        ({"prompt": "a", "quantization": "fp16"}, "params"),  # only a GPU can, and none is live
        ({"prompt": "a", "model": "../smollm2"}, "params.model"),
        ({"prompt": "a", "model": "/etc"}, "params.model"),
        ({"prompt": "a", "model": "nope"}, "params.model"),
        ({"prompt": "a", "model": "minilm"}, "params.model"),  # an encoder: cannot generate
        ({"prompt": "a", "device": "gpu"}, "params.device"),
    ],
)
def test_bad_params_are_422_and_create_nothing(
    client: FlaskClient, user: dict[str, str], db: Database, params: Any, field: str
) -> None:
    r = submit(client, user, params)
    assert r.status_code == 422, r.get_json()
    assert field in [e["field"] for e in r.get_json()["errors"]], r.get_json()
    assert job_count(db) == 0


def test_openai_models_lists_the_generative_models(
    client: FlaskClient, user: dict[str, str]
) -> None:
    models = client.get("/v1/models", headers=user).get_json()
    ids = [m["id"] for m in models["data"]]
    assert "smollm2" in ids and "minilm" not in ids
    assert client.get("/v1/models").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"model": "x"},
        {"messages": ASK, "n": 2},
        {"messages": ASK, "stream": "yes"},
    ],
)
def test_openai_chat_bad_bodies_are_422(
    client: FlaskClient, user: dict[str, str], db: Database, body: Any
) -> None:
    assert client.post("/v1/chat/completions", json=body, headers=user).status_code == 422
    assert job_count(db) == 0


def test_a_precision_the_chosen_pool_cannot_run_is_refused(
    client: FlaskClient, user: dict[str, str]
) -> None:
    r = submit(client, user, {"prompt": "a", "quantization": "fp16"}, device="cpu")
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["field"] == "params.quantization"
    assert "cannot run fp16" in r.get_json()["errors"][0]["message"]


def test_attention_runs_on_the_cpu_unless_the_gpu_is_asked_for(
    app: Flask, client: FlaskClient, user: dict[str, str]
) -> None:
    body = {"kind": "attention", "params": {"text": "Hi"}}
    assert client.post("/api/v1/jobs", json=body, headers=user).get_json()["queue"] == "cpu"
    assert (
        client.post("/api/v1/jobs", json={**body, "device": "gpu"}, headers=user).status_code == 422
    )
    gpu_online(app, queue="gpu")
    cpu = {"name": "cpu@test", "pool": "cpu", "queues": ["cpu"]}
    workers.beat(app.extensions["ladder"].redis, "cpu@test", cpu)
    assert client.post("/api/v1/jobs", json=body, headers=user).get_json()["queue"] == "cpu"
    on_gpu = client.post("/api/v1/jobs", json={**body, "device": "gpu"}, headers=user)
    assert on_gpu.status_code == 202 and on_gpu.get_json()["queue"] == "gpu"
