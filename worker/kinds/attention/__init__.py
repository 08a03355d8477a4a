"""Runs an `attention` job: the bare formula on matrices, or a registry model on a text."""

from __future__ import annotations

from functools import partial

import torch

from shared.kinds import FieldError, InvalidParams, Outcome
from shared.kinds.attention import AttentionParams, MatrixAttention
from shared.model_registry import UnknownModel, resolve
from worker.context import RunContext
from worker.kinds.attention import explorer
from worker.kinds.attention.matrices import analyse_matrices
from worker.kinds.attention.text import analyse_text
from worker.model_cache import cache, load_encoder


def run(params: AttentionParams, context: RunContext) -> Outcome:
    settings = context.settings
    spec = params.root
    if isinstance(spec, MatrixAttention):
        result = analyse_matrices(spec)
        page = explorer.matrices_page(result)
        result["artifacts"] = ["explorer.html"]
        return Outcome(result=result, artifacts={"explorer.html": (explorer.CONTENT_TYPE, page)})
    try:
        entry = resolve(spec.model, settings.models_dir)
    except UnknownModel as exc:
        raise InvalidParams([FieldError("params.model", str(exc))]) from None
    # On a GPU worker the model runs on its GPU; the statistics are computed on the CPU.
    device = "cuda" if context.pool == "gpu" and torch.cuda.is_available() else "cpu"
    loader = partial(load_encoder, device=device)
    loaded = cache(settings.model_cache_bytes).get(entry, f"encoder:{device}", loader)
    plan = {"device": "gpu" if device == "cuda" else "cpu", "dtype": "fp32"}
    context.hold_model(entry.name, {"purpose": "attention", "plan": plan, "bytes": loaded.nbytes})
    return analyse_text(spec, loaded, settings, context.progress)
