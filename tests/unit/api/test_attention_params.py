"""Submitting `attention` jobs: every bad input is a 422 naming the field, and creates nothing."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.db import Database
from tests.support import job_count

OK_MATRICES = {"q": [[1, 0], [0, 1]], "k": [[1, 0], [0, 1], [1, 1]], "v": [[1], [2], [3]]}


def submit(client: FlaskClient, user: dict[str, str], params: Any) -> Any:
    return client.post("/api/v1/jobs", json={"kind": "attention", "params": params}, headers=user)


def test_both_modes_are_accepted(client: FlaskClient, user: dict[str, str]) -> None:
    text = submit(client, user, {"text": "Hello there.", "text_pair": "General Kenobi."})
    assert text.status_code == 202
    assert text.get_json()["params"]["model"] == "minilm"
    assert text.get_json()["params"]["max_tokens"] == 128
    matrices = submit(client, user, {**OK_MATRICES, "mask": "causal", "scale": 0.5})
    assert matrices.status_code == 202
    assert matrices.get_json()["params"]["v"] == [[1.0], [2.0], [3.0]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"text": ""}, "params.text"),
        ({"text": "x" * 5001}, "params.text"),
        ({"text": "x" * 3000, "text_pair": "y" * 2001}, "params.text"),
        ({"text": "hi", "max_tokens": 257}, "params.max_tokens"),
        ({"text": "hi", "max_tokens": 1}, "params.max_tokens"),
        ({"text": "hi", "top_k": 0}, "params.top_k"),
        ({"text": "hi", "model": "../etc"}, "params.model"),
        ({"text": "hi", "model": "/etc/passwd"}, "params.model"),
        ({"text": "hi", "model": "gpt-17"}, "params.model"),
        ({"text": "hi", "layers": [6]}, "params.layers"),
        ({"text": "hi", "heads": [12]}, "params.heads"),
        ({"text": "hi", "heads": [1, 1]}, "params.heads"),
        ({"text": "hi", "layers": [-1]}, "params.layers.0"),
        ({"text": 5}, "params.text"),
        ({"text": "hi", "return_matrices": "yes"}, "params.return_matrices"),
        ({"text": "hi", "q": [[1]]}, "params.text"),
        ({**OK_MATRICES, "q": [[1, 0], [1]]}, "params.q.1"),
        ({**OK_MATRICES, "k": [[1, 0, 0]] * 3}, "params.k"),
        ({**OK_MATRICES, "v": [[1], [2]]}, "params.v"),
        ({**OK_MATRICES, "q": [[]]}, "params.q.0"),
        ({**OK_MATRICES, "q": []}, "params.q"),
        ({**OK_MATRICES, "q": [["1", 0], [0, 1]]}, "params.q.0.0"),
        ({**OK_MATRICES, "q": [[True, 0], [0, 1]]}, "params.q.0.0"),
        ({**OK_MATRICES, "mask": "diagonal"}, "params.mask"),
        ({**OK_MATRICES, "mask": [[True, True, True]]}, "params.mask"),
        ({**OK_MATRICES, "mask": [[True, True, True], [False, False, False]]}, "params.mask.1"),
        ({**OK_MATRICES, "scale": 0}, "params.scale"),
        ({**OK_MATRICES, "scale": "sqrt"}, "params.scale"),
        ({"q": [[0.0]] * 257, "k": [[0.0]], "v": [[0.0]]}, "params.q"),
        ({"q": [[0.0] * 513], "k": [[0.0] * 513], "v": [[0.0]]}, "params.q"),
        ({"q": [[0.0]], "k": [[0.0]], "v": [[0.0] * 513]}, "params.v"),
    ],
)
def test_bad_params_are_422_and_create_nothing(
    client: FlaskClient, user: dict[str, str], db: Database, params: Any, field: str
) -> None:
    r = submit(client, user, params)
    assert r.status_code == 422, r.get_json()
    fields = [e["field"] for e in r.get_json()["errors"]]
    assert any(f.startswith(field) for f in fields), fields
    assert job_count(db) == 0


def test_a_number_too_big_for_a_float_is_422(
    client: FlaskClient, user: dict[str, str], db: Database
) -> None:
    body = '{"kind": "attention", "params": {"q": [[1e400]], "k": [[1]], "v": [[1]]}}'
    r = client.post("/api/v1/jobs", data=body, content_type="application/json", headers=user)
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["field"] == "params.q.0.0"
    assert "finite" in r.get_json()["errors"][0]["message"]
    assert job_count(db) == 0


def test_nan_is_not_json(client: FlaskClient, user: dict[str, str], db: Database) -> None:
    body = '{"kind": "attention", "params": {"q": [[NaN]], "k": [[1]], "v": [[1]]}}'
    r = client.post("/api/v1/jobs", data=body, content_type="application/json", headers=user)
    assert r.status_code == 400
    assert job_count(db) == 0


def test_the_kinds_list_shows_both_modes_and_the_limits(client: FlaskClient) -> None:
    kinds = {k["name"]: k for k in client.get("/api/v1/kinds").get_json()["items"]}
    attention = kinds["attention"]
    titles = {s["$ref"].rsplit("/", 1)[-1] for s in attention["params_schema"]["oneOf"]}
    assert titles == {"TextAttention", "MatrixAttention"}
    assert attention["limits"]["max_rows"] == 256 and attention["limits"]["max_dim"] == 512


def test_the_api_never_imports_torch() -> None:
    code = (
        "import sys; from api import create_app; from shared.config import Settings; "
        "app = create_app(Settings(database_url='sqlite://', broker_url='memory://', "
        "secret_key='x' * 32)); "
        "app.test_client().get('/api/v1/kinds'); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
