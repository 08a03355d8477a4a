"""explorer.html holds the job's own numbers: its result's statistics and the model's weights."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from shared.config import Settings
from shared.explorer import FORMAT, embedded, render
from shared.kinds import InvalidParams, get
from shared.kinds.attention import AttentionLimits, MatrixAttention
from tests.support import explorer_weights
from worker.kinds.attention import explorer
from worker.kinds.attention.matrices import analyse_matrices
from worker.kinds.attention.text import analyse_text
from worker.model_cache import Loaded


def parse(**given: object) -> Any:
    return get("attention").parse(given, Settings()).root  # type: ignore[union-attr]


def page_of(outcome: Any) -> dict[str, Any]:
    content_type, page = outcome.artifacts["explorer.html"]
    assert content_type == "text/html"
    return embedded(page.decode())


def test_a_pairs_page_holds_every_heads_weights_and_the_results_numbers(minilm: Loaded) -> None:
    p = parse(text="The cat sat on the mat.", text_pair="It was happy.", return_matrices=True)
    outcome = analyse_text(p, minilm, Settings())
    result, data = outcome.result, page_of(outcome)
    assert data["format"] == FORMAT and data["mode"] == "text"
    assert (data["layers"], data["heads"]) == (6, 12) and data["kept"]["all"]
    assert [t["text"] for t in data["tokens"]] == [t["text"] for t in result["tokens"]]
    segments = [t["segment"] for t in data["tokens"]]
    first_sep = [t["text"] for t in data["tokens"]].index("[SEP]")
    assert segments == [0] * (first_sep + 1) + [1] * (len(segments) - first_sep - 1)
    for layer in result["layers"]:
        for head in layer["heads"]:
            at = layer["layer"], head["head"]
            for name in data["stats"]["names"]:
                assert data["stats"]["values"][name][at[0]][at[1]] == head[name]
            assert data["stats"]["labels"][at[0]][at[1]] == head["type"]
            assert data["stats"]["top"][at[0]][at[1]] == head["top"]
    assert "entropy" in data["stats"]["names"] and "type" not in data["stats"]["names"]
    assert data["rollout"] == result["rollout"] and data["focus"] == result["heatmap"]
    with np.load(io.BytesIO(outcome.artifacts["attentions.npz"][1])) as stored:
        expected = stored["attentions"].reshape(-1, 14, 14)  # float16, every layer and head
    assert data["weights"]["pairs"] == [[i, j] for i in range(6) for j in range(12)]
    np.testing.assert_array_equal(explorer_weights(data), expected)


def test_a_long_text_keeps_the_chosen_heads_and_says_so(minilm: Loaded) -> None:
    settings = Settings(limits={"attention": AttentionLimits(explorer_tokens=16)})
    p = parse(text=" ".join(["word"] * 40), layers=[1, 4], heads=[3])
    outcome = analyse_text(p, minilm, settings)
    data = page_of(outcome)
    assert not data["kept"]["all"] and data["kept"]["limit"] == 16
    assert data["weights"]["pairs"] == [[1, 3], [4, 3]]  # the heatmap's head first
    assert any("only 2 chosen heads have weights" in note for note in data["notes"])
    assert len(data["stats"]["labels"]) == 6  # every head keeps its statistics
    weights = explorer_weights(data)
    assert weights.shape == (2, 42, 42)
    np.testing.assert_allclose(weights.astype(float).sum(-1), 1, atol=0.02)


def test_the_default_limit_keeps_every_head_up_to_128_tokens(minilm: Loaded) -> None:
    for words, every in ((126, True), (127, False)):
        p = parse(text=" ".join(["a"] * words), max_tokens=256)
        outcome = analyse_text(p, minilm, Settings())
        data = page_of(outcome)
        assert len(data["tokens"]) == words + 2 and data["kept"]["all"] is every
        assert len(data["weights"]["pairs"]) == (72 if every else 16)


def test_with_no_heads_named_a_long_text_keeps_the_most_focused(minilm: Loaded) -> None:
    settings = Settings(limits={"attention": AttentionLimits(explorer_tokens=8, explorer_heads=5)})
    p = parse(text="The cat sat on the mat, and then it slept.")
    outcome = analyse_text(p, minilm, settings)
    data = page_of(outcome)
    confidence = np.array(data["stats"]["values"]["confidence"])
    kept = [tuple(pair) for pair in data["weights"]["pairs"]]
    assert kept[0] == (data["focus"]["layer"], data["focus"]["head"])
    ranked = sorted(np.ndindex(confidence.shape), key=lambda at: -confidence[at])
    assert kept == ranked[:5]


def test_a_page_too_large_for_an_artifact_keeps_the_chosen_heads(minilm: Loaded) -> None:
    p = parse(text=" ".join(["stairs"] * 58), heads=[4])  # 60 tokens: 0.6 MB for 72 heads
    outcome = analyse_text(p, minilm, Settings(max_artifact_bytes=300_000))
    data = page_of(outcome)
    assert not data["kept"]["all"]
    assert data["weights"]["pairs"] == [[layer, 4] for layer in range(6)]
    assert any("larger than an artifact may be" in note for note in data["notes"])
    assert len(outcome.artifacts["explorer.html"][1]) <= 300_000


def test_an_empty_list_of_heads_is_refused() -> None:
    with pytest.raises(InvalidParams) as refused:
        parse(text="The cat sat.", layers=[2], heads=[])
    assert [e.field for e in refused.value.errors] == ["params.heads"]


def test_a_random_weight_model_is_labelled_on_the_page(tiny_bert: Loaded) -> None:
    data = page_of(analyse_text(parse(text="Hello there."), tiny_bert, Settings()))
    assert any("random weights" in note for note in data["notes"])


def test_a_matrices_page_holds_the_results_weights() -> None:
    rng = np.random.default_rng(3)
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    spec = MatrixAttention(q=q.tolist(), k=k.tolist(), v=v.tolist(), mask="causal")
    result = analyse_matrices(spec)
    data = embedded(explorer.matrices_page(result).decode())
    assert data["mode"] == "matrices" and data["shape"] == result["shape"]
    assert data["stats"]["rows"] == result["entropy"]
    assert data["matrices"]["scaling"] == result["scaling"]
    weights = explorer_weights(data)[0]
    np.testing.assert_array_equal(weights, np.array(result["weights"]).astype(np.float16))


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!-- x", "@@SCRIPT@@"])
def test_no_text_a_job_holds_can_become_markup(text: str) -> None:
    data = {"format": FORMAT, "title": text, "tokens": [{"text": text}]}
    page = render(data)
    escaped = text.replace("<", "&lt;").replace(">", "&gt;")
    assert f"<title>{escaped} · Ladder attention explorer</title>" in page
    # Markup never appears as itself; a marker stays itself, unreplaced, in the title and data.
    assert page.count(text) == (0 if text != escaped else 3)
    assert page.lower().count("</script") == 2 and embedded(page) == data


def test_numbers_json_has_no_word_for_become_null() -> None:
    data = {"format": FORMAT, "stats": {"values": {"entropy": [[float("nan"), 1.5]]}}}
    assert embedded(render(data))["stats"]["values"]["entropy"] == [[None, 1.5]]
