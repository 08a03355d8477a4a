from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import torch

from shared.config import Settings
from shared.db import Database
from shared.model_registry import resolve
from worker.app import LadderCelery
from worker.model_cache import Loaded, load_encoder


@pytest.fixture
def app(settings: Settings, db: Database) -> Iterator[LadderCelery]:
    """A worker's Celery app on the test's SQLite database, and a fakeredis for Redis: what
    `execute` and the reconciler use, with no broker and no worker process."""
    celery = LadderCelery(settings)
    celery._db = db
    celery._redis = fakeredis.FakeRedis()
    yield celery
    celery.close()


@pytest.fixture(scope="session")
def minilm() -> Loaded:
    return load_encoder(resolve("minilm", Path("/nonexistent")))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, minilm: Loaded) -> Path:
    """A registry with one tiny BERT of random weights, built from a config (nothing downloaded)."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("models")
    folder = root / "tiny-bert"
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=minilm.tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    minilm.tokenizer.save_pretrained(folder)
    (folder / "ladder.json").write_text(
        json.dumps(
            {"display_name": "tiny BERT (random weights, for tests)", "random_weights": True}
        )
    )
    return root


@pytest.fixture(scope="session")
def tiny_bert(models_dir: Path) -> Loaded:
    return load_encoder(resolve("tiny-bert", models_dir))
