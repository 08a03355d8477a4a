"""What a transformer attends to on a text: per-head statistics, rollout, and a heatmap.

Attention weights come from the model's own `output_attentions`; the norm-based view
(Kobayashi et al., 2020) also weighs each attended token j by ‖f(x_j)‖, the size of the vector
it actually contributes through the head's value and output projections.
"""

from __future__ import annotations

import io
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import numpy as np
import torch

from shared.config import Settings
from shared.kinds import Outcome
from shared.kinds.attention import KIND, AttentionLimits, TextAttention
from worker.kinds.attention import explorer
from worker.kinds.attention.heatmap import render as render_heatmap
from worker.kinds.attention.stats import (
    Array,
    TokenFlags,
    head_stats,
    label_of,
    rollout,
    top_attended,
)
from worker.model_cache import Loaded, ModelError
from worker.progress import Report, ignore

RESIDUAL = 0.5
FORWARD_SHARE = 0.4
"""How much of a text job the forward pass is, reported layer by layer as each one ends."""
STAGES = {
    "statistics": 0.42, "heatmap": 0.8, "rollout": 0.9, "matrices": 0.93, "explorer": 0.95,
}  # fmt: skip
"""How much of the job is done as each later stage begins. Measured on MiniLM, 128 tokens, on
a CPU: the forward pass about 40 % of the time, the statistics (with the norm-based view) 40 %,
the heatmap 8 %, the rest the rollout and the result."""


def _segments(encoding: Any) -> list[int]:
    """Which text each position belongs to: 0 for `text`, 1 for `text_pair`; a special token
    goes with the text before it ([CLS] with the first)."""
    try:
        ids = encoding.sequence_ids(0)
    except ValueError:  # a slow tokenizer keeps no sequence ids
        types = encoding.get("token_type_ids")
        return [0] * encoding["input_ids"].shape[-1] if types is None else types[0].tolist()
    result, current = [], 0
    for sequence in ids:
        current = current if sequence is None else sequence
        result.append(current)
    return result


def _ranked(
    focus: tuple[int, int, str], named: list[tuple[int, int]], confidence: Array
) -> list[tuple[int, int]]:
    """The heads in the order an explorer page that cannot keep them all keeps their weights:
    the heatmap's, then those the params name, else the most focused."""
    if not named:
        order = np.argsort(-confidence, axis=None, kind="stable")
        named = [divmod(int(i), confidence.shape[1]) for i in order]
    return list(dict.fromkeys([(focus[0], focus[1]), *named]))


def _explorer_page(
    result: dict[str, Any],
    attentions: Array,
    segments: list[int],
    ranked: list[tuple[int, int]],
    settings: Settings,
) -> bytes:
    """explorer.html with every head's weights while the text has at most `explorer_tokens`
    tokens and the page fits an artifact; else with the first `explorer_heads` of `ranked`."""
    limits: AttentionLimits = KIND.limits(settings)
    if attentions.shape[-1] <= limits.explorer_tokens:
        page = explorer.text_page(result, attentions, segments, None, limits.explorer_tokens)
        if len(page) <= settings.max_artifact_bytes:
            return page
    kept = ranked[: limits.explorer_heads]
    return explorer.text_page(result, attentions, segments, kept, limits.explorer_tokens)


def is_punctuation(token: str) -> bool:
    text = token.removeprefix("##").lstrip("Ġ▁")
    return bool(text) and all(unicodedata.category(c).startswith("P") for c in text)


def analyse_text(
    params: TextAttention, loaded: Loaded, settings: Settings, report: Report = ignore
) -> Outcome:
    """The result of a text-mode job (see DESIGN.md's result shapes); `report` hears of each
    layer the forward pass leaves behind, then of each stage of the analysis."""
    started = time.perf_counter()
    tokenizer, model = loaded.tokenizer, loaded.model
    encoding = tokenizer(
        params.text,
        params.text_pair,
        truncation=True,
        max_length=params.max_tokens,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    full_length = len(tokenizer(params.text, params.text_pair)["input_ids"])
    special = encoding.pop("special_tokens_mask")[0].numpy().astype(bool)
    segments = _segments(encoding)
    encoding = encoding.to(model.device)
    with torch.inference_mode(), _layers_reported(model, report):
        output = model(**encoding, output_attentions=True, output_hidden_states=True)
    forward_seconds = time.perf_counter() - started
    if not output.attentions or output.attentions[0] is None:
        # SDPA and flash attention return no weights, silently: never report an empty analysis.
        raise ModelError(f"model {loaded.entry.name!r} returned no attention weights")
    # float32, as the model computed them: the statistics are reported to 6 decimals.
    attentions = torch.stack(output.attentions)[:, 0].float().cpu().numpy()
    layers, heads, size, _ = attentions.shape

    ids = encoding["input_ids"][0].cpu().tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids)
    flags = TokenFlags(
        special=special,
        cls=np.array([t in (tokenizer.cls_token, tokenizer.bos_token) for t in tokens]),
        sep=np.array([t in (tokenizer.sep_token, tokenizer.eos_token) for t in tokens]),
        punct=np.array([is_punctuation(t) and not s for t, s in zip(tokens, special, strict=True)]),
    )
    queries = ~special if params.exclude_special and (~special).any() else np.ones(size, bool)
    candidates = ~special if params.exclude_special else np.ones(size, bool)
    report(STAGES["statistics"], "statistics")
    norms = value_norms(model, output.hidden_states, heads)

    stats = head_stats(attentions, flags, queries)  # each (layers, heads)
    if norms is not None:
        weighted = attentions * norms[:, :, None, :]
        rows = weighted[..., queries, :]
        stats["norm_special_share"] = (rows[..., special].sum(-1) / rows.sum(-1)).mean(-1)
    top_index, top_weight = top_attended(attentions, queries, candidates, params.top_k)
    result_layers = [
        {
            "layer": layer,
            "mean": {name: round(float(v[layer].mean()), 6) for name, v in stats.items()},
            "heads": [
                {
                    "head": head,
                    **{name: round(float(v[layer, head]), 6) for name, v in stats.items()},
                    "type": label_of(stats, (layer, head), size),
                    "top": [
                        {"index": int(j), "token": tokens[j], "weight": round(float(w), 6)}
                        for j, w in zip(
                            top_index[layer, head], top_weight[layer, head], strict=True
                        )
                        if w >= 0
                    ],
                }
                for head in range(heads)
            ],
        }
        for layer in range(layers)
    ]

    chosen_layers = params.layers if params.layers is not None else list(range(layers))
    chosen_heads = params.heads if params.heads is not None else list(range(heads))
    if params.layers or params.heads:  # each is None or has at least one
        focus = (chosen_layers[0], chosen_heads[0], "chosen by the params")
    else:
        best_layer, best_head = np.unravel_index(np.argmax(stats["confidence"]), (layers, heads))
        focus = (int(best_layer), int(best_head), "the most focused head (highest confidence)")
    report(STAGES["heatmap"], "heatmap")
    png = render_heatmap(
        attentions[focus[0], focus[1]],
        tokens,
        f"{loaded.entry.name}: layer {focus[0]}, head {focus[1]}",
    )
    artifacts = {"heatmap.png": ("image/png", png)}

    report(STAGES["rollout"], "rollout")
    result: dict[str, Any] = {
        "model": loaded.entry.name,
        "model_info": {
            "display_name": loaded.entry.display_name,
            "architecture": type(model).__name__,
            "layers": layers,
            "heads": heads,
            "weights_sha256": loaded.weights_sha256,
            "random_weights": bool(loaded.entry.meta.get("random_weights", False)),
        },
        "versions": {lib: version(lib) for lib in ("torch", "transformers")},
        "tokens": [
            {"index": i, "text": t, "special": bool(s), "punctuation": bool(p)}
            for i, (t, s, p) in enumerate(zip(tokens, special, flags.punct, strict=True))
        ],
        "truncated": full_length > size,
        "layers": result_layers,
        "rollout": np.round(
            rollout(list(attentions.mean(axis=1, dtype=np.float64)), RESIDUAL), 6
        ).tolist(),
        "rollout_residual": RESIDUAL,
        "norm_based": norms is not None,
        "heatmap": {"layer": focus[0], "head": focus[1], "why": focus[2]},
    }
    if params.return_matrices:
        report(STAGES["matrices"], "matrices")
        pairs = [(layer, head) for layer in chosen_layers for head in chosen_heads]
        limits: AttentionLimits = KIND.limits(settings)
        if size <= limits.inline_tokens and len(pairs) <= limits.inline_pairs:
            result["matrices"] = [
                {"layer": layer, "head": head,
                 "weights": np.round(attentions[layer, head], 9).tolist()}
                for layer, head in pairs
            ]  # fmt: skip
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            attentions=attentions[np.ix_(chosen_layers, chosen_heads)].astype(np.float16),
            layers=np.array(chosen_layers),
            heads=np.array(chosen_heads),
        )
        artifacts["attentions.npz"] = ("application/octet-stream", buffer.getvalue())
    report(STAGES["explorer"], "explorer")
    named = [(layer, head) for layer in chosen_layers for head in chosen_heads]
    ranked = _ranked(focus, named if params.layers or params.heads else [], stats["confidence"])
    page = _explorer_page(result, attentions, segments, ranked, settings)
    artifacts["explorer.html"] = (explorer.CONTENT_TYPE, page)
    result["artifacts"] = list(artifacts)
    result["timings"] = {
        "load_s": round(loaded.load_seconds, 4),
        "forward_s": round(forward_seconds, 4),
        "analysis_s": round(time.perf_counter() - started - forward_seconds, 4),
    }
    return Outcome(result=result, artifacts=artifacts)


@contextmanager
def _layers_reported(model: Any, report: Report) -> Iterator[None]:
    """Report each of the model's layers as the forward pass leaves it, while the block runs.

    The model is the cache's, shared by whatever else runs in this process: the hooks only
    speak for the thread that set them, and go when the block ends."""
    stack = _layer_stack(model) if report is not ignore else []
    owner = threading.get_ident()

    def hook(index: int) -> Any:
        def done(*_: Any) -> None:
            if threading.get_ident() == owner:
                fraction = FORWARD_SHARE * (index + 1) / len(stack)
                report(fraction, "forward", layer=index, layers=len(stack))

        return done

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(stack)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _layer_stack(model: Any) -> list[Any]:
    """The model's transformer layers, in order: the first module list as long as its config's
    layer count (BERT's `encoder.layer`, GPT-2's `h`, Llama's `layers`); none if it has none."""
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return list(module)
    return []


def value_norms(model: Any, hidden_states: Any, heads: int) -> Array | None:
    """‖f_h(x_j)‖ as (layers, heads, tokens), for BERT-like models; None for other layouts.

    f_h(x) = (x·W_V,h + b_V,h)·W_O,hᵀ: what token j adds to the output through head h.
    """
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None or hidden_states is None:
        return None
    result = []
    with torch.inference_mode():
        for index, layer in enumerate(layers):
            attention = getattr(layer, "attention", None)
            value = getattr(getattr(attention, "self", None), "value", None)
            dense = getattr(getattr(attention, "output", None), "dense", None)
            if value is None or dense is None:
                return None
            values = value(hidden_states[index][0])  # tokens × (heads · d_head)
            d_head = values.shape[-1] // heads
            per_head = values.view(-1, heads, d_head).transpose(0, 1)  # heads × tokens × d_head
            out = dense.weight.view(dense.weight.shape[0], heads, d_head).transpose(0, 1)
            # ‖v·W_Oᵀ‖² = v·(W_Oᵀ W_O)·vᵀ: a d_head × d_head Gram matrix instead of the
            # tokens × hidden products themselves.
            gram = out.transpose(1, 2) @ out  # heads × d_head × d_head
            squared = ((per_head @ gram) * per_head).sum(-1)
            result.append(squared.clamp(min=0).sqrt().float().cpu().numpy())
    return np.stack(result)
