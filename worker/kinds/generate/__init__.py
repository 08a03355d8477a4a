"""Runs a `generate` job: plan and load the model (once per process), then generate.

A GGUF model runs on llama.cpp. A transformers model with a GGUF twin (the same weights,
see `gguf_twin`) runs as its twin on the CPU pool when quantization is `auto` and llama.cpp is
installed: several times the tokens per second of transformers there (bench/RESULTS.md).
"""

from __future__ import annotations

from functools import partial

from shared.kinds import FieldError, InvalidParams, Outcome
from shared.kinds.generate import (
    GGUF_ENGINE_MISSING,
    KIND,
    GenerateParams,
    gguf_engine_installed,
    model_name,
)
from shared.model_registry import ModelEntry, UnknownModel, gguf_twin, resolve
from shared.planner import PlanRefused
from worker.context import RunContext
from worker.kinds.generate import llama
from worker.kinds.generate.decode import generate
from worker.kinds.generate.loading import load
from worker.model_cache import cache


def run(params: GenerateParams, context: RunContext) -> Outcome:
    settings = context.settings
    name = model_name(params, settings)
    try:
        entry = resolve(name, settings.models_dir)
    except UnknownModel as exc:
        raise InvalidParams([FieldError("params.model", str(exc))]) from None
    entry = _engine_entry(entry, params, context)
    batch = KIND.limits(settings).batch
    if entry.gguf is not None:
        loader = partial(llama.load, batch=batch)
    else:
        loader = partial(load, pool=context.pool, requested=params.quantization,
                         trust=name in settings.trust_remote_code, batch=batch)  # fmt: skip
    try:
        generator = cache(settings.model_cache_bytes).get(
            entry, f"generate:{context.pool}:{params.quantization}", loader
        )
    except PlanRefused as exc:
        raise InvalidParams([FieldError("params.quantization", str(exc))]) from None
    context.hold_model(entry.name, {"purpose": "generate", "plan": generator.plan.as_dict(),
                                    "bytes": generator.nbytes})  # fmt: skip
    return Outcome(result=generate(params, generator, context))


def _engine_entry(entry: ModelEntry, params: GenerateParams, context: RunContext) -> ModelEntry:
    """The model to load: the one named, or its GGUF twin where llama.cpp should run it."""
    installed = gguf_engine_installed()
    if entry.gguf is not None:
        if not installed:  # the API checked its own machine, which need not be this one
            raise InvalidParams([FieldError("params.model", f"{entry.name} {GGUF_ENGINE_MISSING}")])
        return entry
    if context.pool == "cpu" and params.quantization == "auto" and installed:
        return gguf_twin(entry.name, context.settings.models_dir) or entry
    return entry
