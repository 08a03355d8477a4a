"""Text mode against transformers' own output_attentions, computed here independently."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.config import Settings
from shared.kinds import get
from shared.kinds.attention import TextAttention
from shared.model_registry import ModelEntry, UnknownModel, resolve
from worker.kinds.attention.stats import row_entropy
from worker.kinds.attention.text import analyse_text
from worker.model_cache import Loaded, ModelError, load_encoder

SENTENCES = [
    ("The cat sat on the mat.", None),
    ("Attention is all you need, said the paper in 2017!", None),
    (
        "How many ways are there to climb ten stairs?",
        "Eighty-nine, if you take one or two at a time.",
    ),
]


def params(settings: Settings | None = None, **given: object) -> TextAttention:
    parsed = get("attention").parse(given, settings or Settings())  # type: ignore[union-attr]
    assert isinstance(parsed.root, TextAttention)  # type: ignore[attr-defined]
    return parsed.root  # type: ignore[attr-defined, no-any-return]


def reference(text: str, pair: str | None) -> np.ndarray:
    """transformers' own attentions for the same input, from a model loaded here."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve("minilm", Path("/nonexistent")).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(**tokenizer(text, pair, return_tensors="pt"), output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy()


@pytest.mark.parametrize(("text", "pair"), SENTENCES)
def test_weights_equal_transformers_output_attentions(
    minilm: Loaded, text: str, pair: str | None
) -> None:
    expected = reference(text, pair)
    layers, heads = [0, 3, 5], [0, 7, 11]
    p = params(text=text, text_pair=pair, return_matrices=True, layers=layers, heads=heads)
    result = analyse_text(p, minilm, Settings()).result
    assert len(result["matrices"]) == 9
    for item in result["matrices"]:
        got = np.array(item["weights"])
        assert np.abs(got - expected[item["layer"], item["head"]]).max() <= 1e-6
    # The statistics are those of the same weights: entropy of every head, recomputed here.
    entropy = row_entropy(expected.astype(np.float64)).mean(-1)
    for layer in result["layers"]:
        for head in layer["heads"]:
            assert head["entropy"] == pytest.approx(entropy[layer["layer"], head["head"]], abs=2e-6)


def test_result_shape(minilm: Loaded) -> None:
    outcome = analyse_text(params(text="The cat sat on the mat."), minilm, Settings())
    result = outcome.result
    assert result["model"] == "minilm"
    assert result["model_info"]["weights_sha256"].startswith("53aa5117")
    assert result["model_info"]["random_weights"] is False
    texts = [t["text"] for t in result["tokens"]]
    assert texts == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    assert [t["special"] for t in result["tokens"]] == [True] + [False] * 7 + [True]
    assert [t["punctuation"] for t in result["tokens"]][7] is True
    assert [layer["layer"] for layer in result["layers"]] == list(range(6))
    head = result["layers"][2]["heads"][4]
    shares = {"special_share", "cls_share", "sep_share", "punct_share", "norm_special_share"}
    expected = {"entropy", "confidence", "distance", "self", "previous", "next", "type", *shares}
    assert expected <= set(head)
    assert len(head["top"]) == 3
    rollout = np.array(result["rollout"])
    assert rollout.shape == (9, 9) and rollout.sum(-1) == pytest.approx(np.ones(9), abs=1e-5)
    assert result["artifacts"] == ["heatmap.png", "explorer.html"] and "matrices" not in result
    png = outcome.artifacts["heatmap.png"][1]
    assert len(png) <= 150_000
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert result["versions"]["torch"] and result["versions"]["transformers"]


def test_norm_based_share_is_attention_reweighted_by_vector_norms(minilm: Loaded) -> None:
    result = analyse_text(params(text="A short sentence, with a comma."), minilm, Settings()).result
    shares = [
        (h["special_share"], h["norm_special_share"])
        for layer in result["layers"]
        for h in layer["heads"]
    ]
    assert all(0 <= n <= 1 for _, n in shares)
    # Kobayashi et al.: heads that sink into [CLS]/[SEP] move little through them.
    assert np.mean([n for _, n in shares]) < np.mean([s for s, _ in shares])


def test_exclude_special_keeps_them_out_of_top_lists(minilm: Loaded) -> None:
    result = analyse_text(
        params(text="The cat sat on the mat.", exclude_special=True, top_k=5), minilm, Settings()
    ).result
    tops = [t["token"] for layer in result["layers"] for h in layer["heads"] for t in h["top"]]
    assert "[CLS]" not in tops and "[SEP]" not in tops


def test_long_inputs_truncate_and_go_to_the_npz_only(minilm: Loaded) -> None:
    text = "word " * 300
    outcome = analyse_text(
        params(text=text, max_tokens=100, return_matrices=True), minilm, Settings()
    )
    assert outcome.result["truncated"] is True
    assert len(outcome.result["tokens"]) == 100
    assert "matrices" not in outcome.result  # 100 tokens > 64: too big to go inline
    with np.load(io.BytesIO(outcome.artifacts["attentions.npz"][1])) as npz:
        assert npz["attentions"].dtype == np.float16
        assert npz["attentions"].shape == (6, 12, 100, 100)


def test_the_heatmap_follows_the_chosen_layer_and_head(minilm: Loaded) -> None:
    result = analyse_text(
        params(text="Hello there.", layers=[4], heads=[9]), minilm, Settings()
    ).result
    assert result["heatmap"] == {"layer": 4, "head": 9, "why": "chosen by the params"}


def test_sdpa_attention_is_refused_not_reported_empty(minilm: Loaded) -> None:
    from transformers import AutoModel

    sdpa = AutoModel.from_pretrained(str(minilm.entry.path), attn_implementation="sdpa").eval()
    loaded = Loaded(minilm.entry, sdpa, minilm.tokenizer, "x", 0, 0.0)
    with pytest.raises(ModelError, match="no attention weights"):
        analyse_text(params(text="Hi."), loaded, Settings())


def test_weights_that_do_not_match_the_pinned_sha256_are_refused(minilm: Loaded) -> None:
    entry = ModelEntry(
        "minilm", minilm.entry.path, "x", expected_sha256="0" * 64, weights_file="model.safetensors"
    )
    with pytest.raises(ModelError, match="sha256"):
        load_encoder(entry)


def test_a_registry_folder_model_loads_the_same_way(models_dir: Path) -> None:
    loaded = load_encoder(resolve("tiny-bert", models_dir))
    settings = Settings(models_dir=models_dir)
    p = params(settings, text="Climb the stairs.", model="tiny-bert", layers=[1], heads=[3])
    result = analyse_text(p, loaded, settings).result
    assert result["model_info"]["random_weights"] is True
    assert "random weights" in result["model_info"]["display_name"]
    assert len(result["layers"]) == 2 and len(result["layers"][0]["heads"]) == 4


def test_names_cannot_reach_outside_the_registry(models_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    os.symlink(outside, models_dir / "escape")
    try:
        for name in ("../tiny-bert", "/etc", "tiny-bert/../tiny-bert", "escape", "", ".", "nope"):
            with pytest.raises(UnknownModel):
                resolve(name, models_dir)
    finally:
        (models_dir / "escape").unlink()
