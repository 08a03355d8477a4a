"""Runs an `attention` job: the bare formula on matrices, or a registry model on a text."""

from __future__ import annotations

from shared.kinds import FieldError, InvalidParams, Outcome
from shared.kinds.attention import AttentionParams, MatrixAttention
from shared.registry import UnknownModel, resolve
from worker.attention.matrices import analyse_matrices
from worker.attention.text import analyse_text
from worker.context import RunContext
from worker.models import cache, load_encoder


def run(params: AttentionParams, context: RunContext) -> Outcome:
    settings = context.settings
    spec = params.root
    if isinstance(spec, MatrixAttention):
        return Outcome(result=analyse_matrices(spec))
    try:
        entry = resolve(spec.model, settings.models_dir)
    except UnknownModel as exc:
        raise InvalidParams([FieldError("params.model", str(exc))]) from None
    loaded = cache(settings.model_cache_bytes).get(entry, "encoder", load_encoder)
    plan = {"device": "cpu", "dtype": "fp32"}
    context.hold_model(entry.name, {"purpose": "attention", "plan": plan, "bytes": loaded.nbytes})
    return analyse_text(spec, loaded, settings)
