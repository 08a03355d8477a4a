"""Generate text for a job: tokens stream into Redis as they come; cancel stops within a token."""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from shared.kinds.generate import GenerateParams
from worker.context import RunContext
from worker.kinds.generate.loading import Generator, measured_bytes
from worker.kinds.generate.prompts import FORMATS


class RedisStreamer(BaseStreamer):  # type: ignore[misc]
    """Publishes each new piece of decoded text as a `token` event of the job's stream.

    Text is decoded from all completion tokens so far and only the new suffix is sent, so that
    multi-byte characters split across tokens arrive whole.
    """

    def __init__(self, tokenizer: Any, context: RunContext, prompt_length: int) -> None:
        self.tokenizer, self.context = tokenizer, context
        self.skip = prompt_length
        self.ids: list[int] = []
        self.sent = ""
        self.first_token_at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        ids = value.reshape(-1).tolist()
        if self.skip:  # generate() first puts the whole prompt
            taken = min(self.skip, len(ids))
            self.skip -= taken
            ids = ids[taken:]
        if not ids:
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.ids.extend(ids)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # else half a character: wait for the rest
            self._send(text)

    def end(self) -> None:
        self._send(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def _send(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.context.publish("token", {"text": text[len(self.sent) :], "n": len(self.ids)})
            self.sent = text


class Cancelled(StoppingCriteria):  # type: ignore[misc]
    """Stops generation at the next token once a client has cancelled the job."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.hit = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> torch.Tensor:
        self.hit = self.hit or self.context.cancelled()
        return torch.full((input_ids.shape[0],), self.hit, dtype=torch.bool)


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
    """The `generate` result: text, finish_reason, token counts, plan and timings."""
    tokenizer, model = generator.tokenizer, generator.model
    text = prompt_text(params, generator)
    # A chat template already wrote the special tokens it wants.
    encoded = tokenizer(text, return_tensors="pt", add_special_tokens=params.prompt is not None)
    encoded = {k: v.to(model.device) for k, v in encoded.items()}
    prompt_length = int(encoded["input_ids"].shape[1])
    streamer = RedisStreamer(tokenizer, context, prompt_length)
    cancelled = Cancelled(context)
    sampling = params.temperature > 0
    if params.seed is not None:
        torch.manual_seed(params.seed)
    options: dict[str, Any] = {
        "max_new_tokens": params.max_new_tokens,
        "do_sample": sampling,
        "repetition_penalty": params.repetition_penalty,
        "streamer": streamer,
        "stopping_criteria": StoppingCriteriaList([cancelled]),
        "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id,
    }
    if sampling:
        options.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    if params.stop:
        options.update(stop_strings=params.stop, tokenizer=tokenizer)
    context.publish("stage", {"stage": "generating", "prompt_tokens": prompt_length})
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(**encoded, **options)
    elapsed = time.perf_counter() - started
    completion = output[0, prompt_length:].tolist()
    answer = tokenizer.decode(completion, skip_special_tokens=True)
    reason = _finish_reason(params, completion, answer, tokenizer, cancelled.hit)
    for stop in params.stop:  # the text ends before a stop string, as OpenAI's does
        if stop in answer:
            answer = answer[: answer.index(stop)]
    first = (streamer.first_token_at - started) if streamer.first_token_at else None
    plan = generator.plan.as_dict()
    plan["measured_bytes"] = measured_bytes(generator)
    context.publish("end", {"finish_reason": reason})
    return {
        "text": answer,
        "finish_reason": reason,
        "tokens": {"prompt": prompt_length, "completion": len(completion)},
        "model": generator.entry.name,
        "model_info": {
            "display_name": generator.entry.display_name,
            "random_weights": bool(generator.entry.meta.get("random_weights", False)),
            "weights_sha256": generator.weights_sha256,
        },
        "plan": plan,
        "timings": {
            "load_s": round(generator.load_seconds, 3),
            "first_token_s": round(first, 4) if first is not None else None,
            "generate_s": round(elapsed, 3),
            "tokens_per_s": round(len(completion) / elapsed, 2) if elapsed > 0 else None,
        },
    }


def _finish_reason(
    params: GenerateParams, completion: list[int], text: str, tokenizer: Any, cancelled: bool
) -> str:
    if cancelled:
        return "cancelled"
    if completion and completion[-1] in _eos_ids(tokenizer):
        return "stop"
    if any(stop in text for stop in params.stop):
        return "stop"
    return "length" if len(completion) >= params.max_new_tokens else "stop"


def _eos_ids(tokenizer: Any) -> set[int]:
    eos = tokenizer.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}
