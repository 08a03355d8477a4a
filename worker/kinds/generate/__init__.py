"""Runs a `generate` job: plan and load the model (once per process), then generate."""

from __future__ import annotations

from functools import partial

from shared.kinds import FieldError, InvalidParams, Outcome
from shared.kinds.generate import KIND, GenerateParams, model_name
from shared.model_registry import UnknownModel, resolve
from shared.planner import PlanRefused
from worker.context import RunContext
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
    trust = name in settings.trust_remote_code
    batch = KIND.limits(settings).batch
    loader = partial(load, pool=context.pool, requested=params.quantization, trust=trust,
                     batch=batch)  # fmt: skip
    try:
        generator = cache(settings.model_cache_bytes).get(
            entry, f"generate:{context.pool}:{params.quantization}", loader
        )
    except PlanRefused as exc:
        raise InvalidParams([FieldError("params.quantization", str(exc))]) from None
    context.hold_model(entry.name, {"purpose": "generate", "plan": generator.plan.as_dict(),
                                    "bytes": generator.nbytes})  # fmt: skip
    return Outcome(result=generate(params, generator, context))
