"""Generate text for a job: tokens stream into Redis as they come; cancel stops within a token."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from shared.kinds.generate import GenerateParams
from worker.context import RunContext
from worker.kinds.generate.batch import Sequence, TextStream
from worker.kinds.generate.loading import Generator, measured_bytes
from worker.kinds.generate.prompts import FORMATS
from worker.kinds.generate.sampling import Sampler


def prompt_text(params: GenerateParams, generator: Generator) -> str:
    """The text the model continues: the raw prompt, or the chat in the model's own format."""
    if params.prompt is not None:
        return params.prompt
    messages = [m.model_dump() for m in params.messages or []]
    style = generator.entry.meta.get("chat_format", "template")
    if style in FORMATS:
        return FORMATS[style](messages)
    text: str = generator.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    return text


def generate(params: GenerateParams, generator: Generator, context: RunContext) -> dict[str, Any]:
    """The `generate` result: text, finish_reason, token counts, plan and timings. The job is
    decoded in its model's batch, with whatever other jobs run on it now."""
    tokenizer = generator.tokenizer
    text = prompt_text(params, generator)
    # A chat template already wrote the special tokens it wants.
    prompt = tokenizer(text, add_special_tokens=params.prompt is not None)["input_ids"]
    context.publish("stage", {"stage": "generating", "prompt_tokens": len(prompt)})
    stream = TextStream(partial(tokenizer.decode, skip_special_tokens=True), context, params.stop)
    sampler = Sampler(params, generator.device)
    sequence = Sequence(params, prompt, context, sampler, stream, generator.eos_ids)
    generator.engine.run(sequence)
    ended = sequence.ended_at or time.perf_counter()
    elapsed = ended - sequence.submitted
    first = sequence.first_token_at
    completion = len(sequence.completion)
    plan = generator.plan.as_dict()
    plan["measured_bytes"] = measured_bytes(generator)
    plan["load_peak_bytes"] = generator.load_peak_bytes
    context.publish("end", {"finish_reason": sequence.finish_reason})
    return {
        "text": stream.text,
        "finish_reason": sequence.finish_reason,
        "tokens": {"prompt": len(prompt), "completion": completion},
        "model": generator.entry.name,
        "model_info": {
            "display_name": generator.entry.display_name,
            "random_weights": bool(generator.entry.meta.get("random_weights", False)),
            "weights_sha256": generator.weights_sha256,
        },
        "plan": plan,
        "timings": {
            "load_s": round(generator.load_seconds, 3),
            "first_token_s": round(first - sequence.submitted, 4) if first else None,
            "generate_s": round(elapsed, 3),
            "tokens_per_s": round(completion / elapsed, 2) if elapsed > 0 else None,
            "batch_size_max": sequence.batch_size_max,
        },
    }
