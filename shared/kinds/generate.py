"""`generate`: text generation with a model from the registry, quantized to fit the device.

The params name a model, never a path; the precision is planned on the worker (which knows
its free memory), but a precision the chosen pool cannot run at all is refused here.

Two engines generate: transformers (any folder with a config.json, on either pool) and
llama.cpp (a folder with a GGUF file, on the CPU pool), which `make gguf` installs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from shared.config import Settings
from shared.kinds.base import FieldError, Kind
from shared.model_registry import ModelEntry, UnknownModel, model_config, resolve
from shared.planner import PlanRefused, resolve_precision


@dataclass(frozen=True)
class GenerateLimits:
    """How much a `generate` job may ask for, and how many jobs a worker decodes together."""

    batch: int = 8
    """Jobs one model decodes at once in a worker (its threads pool has as many threads)."""
    max_new_tokens: int = 2_048
    max_prompt_chars: int = 32_000
    max_messages: int = 64
    max_stop: int = 4
    max_stop_chars: int = 64

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1 (LADDER_GENERATE_BATCH), not {self.batch}")


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: StrictStr


class GenerateParams(BaseModel):
    """Parameters of a `generate` job: a prompt, or chat messages, and how to sample."""

    model_config = ConfigDict(extra="forbid", strict=True, title="GenerateParams")

    prompt: Annotated[StrictStr | None, Field(default=None, description="Raw text to continue.")]
    messages: Annotated[
        list[Message] | None,
        Field(default=None, min_length=1, description="A chat; the model's format is applied."),
    ]
    model: Annotated[
        StrictStr | None, Field(default=None, max_length=64, description="A registry name.")
    ]
    max_new_tokens: Annotated[StrictInt, Field(default=128, ge=1)]
    temperature: Annotated[
        FiniteFloat, Field(default=0.0, ge=0, le=5, description="0 decodes greedily.")
    ]
    top_p: Annotated[FiniteFloat, Field(default=1.0, gt=0, le=1)]
    top_k: Annotated[StrictInt, Field(default=0, ge=0, description="0 keeps every token.")]
    repetition_penalty: Annotated[FiniteFloat, Field(default=1.0, gt=0, le=10)]
    seed: Annotated[
        StrictInt | None,
        Field(default=None, ge=0, lt=2**63, description="Same seed and plan, same text."),
    ]
    stop: Annotated[
        list[StrictStr], Field(default_factory=list, description="Stop before any of these.")
    ]
    quantization: Annotated[
        Literal["auto", "none", "fp32", "bf16", "fp16", "int8", "int4"],
        Field(default="auto", description="auto picks the most faithful precision that fits."),
    ]

    @model_validator(mode="after")
    def _one_input(self) -> GenerateParams:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages, not both or neither")
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("the last message must be the user's")
        return self


def model_name(params: GenerateParams, settings: Settings) -> str:
    return params.model or settings.default_generate_model


def check_limits(params: GenerateParams, settings: Settings) -> list[FieldError]:
    limits: GenerateLimits = KIND.limits(settings)
    errors = []
    if params.max_new_tokens > limits.max_new_tokens:
        errors.append(
            FieldError(
                "max_new_tokens", f"must be at most {limits.max_new_tokens} (max_new_tokens)"
            )
        )
    text = params.prompt or "".join(m.content for m in params.messages or [])
    if len(text) > limits.max_prompt_chars:
        where = "prompt" if params.prompt is not None else "messages"
        errors.append(FieldError(where, f"at most {limits.max_prompt_chars} characters "
                                 f"(max_prompt_chars); got {len(text)}"))  # fmt: skip
    if params.messages is not None and len(params.messages) > limits.max_messages:
        errors.append(FieldError("messages", f"at most {limits.max_messages} (max_messages)"))
    if len(params.stop) > limits.max_stop:
        errors.append(FieldError("stop", f"at most {limits.max_stop} strings (max_stop)"))
    for i, stop in enumerate(params.stop):
        if not 0 < len(stop) <= limits.max_stop_chars:
            errors.append(FieldError(f"stop.{i}", f"1 to {limits.max_stop_chars} characters"))
    name = model_name(params, settings)
    try:
        entry = resolve(name, settings.models_dir)
    except UnknownModel as exc:
        return [*errors, FieldError("model", str(exc))]
    if not is_generative(entry):
        errors.append(FieldError("model", f"{name} cannot generate text (not a causal LM)"))
    if entry.gguf is not None:
        return errors + _check_gguf(entry, params)
    allowed = entry.meta.get("precisions")
    if isinstance(allowed, list) and params.quantization not in ("auto", "none", *allowed):
        errors.append(FieldError("quantization", f"{name} allows {', '.join(map(str, allowed))}"))
    return errors


GGUF_ENGINE_MISSING = (
    "is a GGUF model, served by the llama.cpp engine, which is not installed here: "
    "`make gguf` builds it into .venv (llama-cpp-python, about 7 minutes, once)"
)


def gguf_engine_installed() -> bool:
    # find_spec, not import: the API need not load llama.cpp's native library to know.
    return importlib.util.find_spec("llama_cpp") is not None


def _check_gguf(entry: ModelEntry, params: GenerateParams) -> list[FieldError]:
    if not gguf_engine_installed():
        return [FieldError("model", f"{entry.name} {GGUF_ENGINE_MISSING}")]
    if params.quantization != "auto":
        stored = entry.gguf_info().file_type
        return [FieldError("quantization", f"{entry.name} is a GGUF file stored as {stored}, "
                           "which llama.cpp runs as stored: leave quantization auto")]  # fmt: skip
    return []


def check_device(params: GenerateParams, pool: str, settings: Settings) -> list[FieldError]:
    if pool == "gpu":
        try:
            if resolve(model_name(params, settings), settings.models_dir).gguf is not None:
                return [FieldError("model", "GGUF models run on the CPU pool only")]
        except UnknownModel:
            pass  # check_limits has said so
    try:
        resolve_precision(params.quantization, pool)
    except PlanRefused as exc:
        return [FieldError("quantization", str(exc))]
    return []


def is_generative(entry: ModelEntry) -> bool:
    if entry.gguf is not None:
        return True  # llama.cpp's GGUF models are language models
    config = model_config(entry.path)
    architectures = config.get("architectures") or []
    return any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in architectures) or (
        str(config.get("model_type", "")).startswith("chatglm")
    )


def describe_entry(entry: ModelEntry) -> dict[str, Any]:
    """How a model looks in /v1/models and the kinds list."""
    return {"id": entry.name, "display_name": entry.display_name, **entry.meta}


def brief(result: dict[str, Any]) -> str:
    """The start of the generated text."""
    return str(result.get("text", ""))


KIND = Kind(
    name="generate",
    summary="Text generation with a registry model, quantized to fit the device, streamed.",
    params_model=GenerateParams,
    check_limits=check_limits,
    limits_type=GenerateLimits,
    time_limit=900,
    pools=("gpu", "cpu"),
    check_device=check_device,
    stops_itself=True,
    batches=True,
    brief=brief,
)
