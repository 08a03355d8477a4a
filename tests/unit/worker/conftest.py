from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from shared.model_registry import resolve
from worker.model_cache import Loaded, load_encoder


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
