"""`attention`: what a transformer attends to, or softmax(QKᵀ/√d_k)V on matrices a client gives.

Two modes, told apart by the params: `text` analyses a model from the registry on a text (and
an optional second text, as a pair); `q`, `k`, `v` computes the formula itself in float64 and
explains what the √d_k scaling did. The compute lives in worker/kinds/attention/; this module holds
what the API checks before a job exists, so it imports neither torch nor numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    FiniteFloat,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
)

from shared.config import Settings
from shared.kinds.base import FieldError, Kind
from shared.model_registry import UnknownModel, model_config, resolve


@dataclass(frozen=True)
class AttentionLimits:
    """How much an `attention` job may ask for."""

    max_text_chars: int = 5_000
    max_tokens: int = 256
    """The cap on a text job's `max_tokens` (its default is 128)."""
    max_rows: int = 256
    """Matrices mode: the most rows of q (n) and of k and v (m)."""
    max_dim: int = 512
    """Matrices mode: the widest d (q, k) and d_v (v)."""
    inline_tokens: int = 64
    inline_pairs: int = 16
    """Attention matrices go inline in the result only up to these sizes; else the .npz."""
    max_top_k: int = 20
    explorer_tokens: int = 128
    """The explorer page keeps every head's weights up to this many tokens; beyond it, the
    statistics of every head and the weights of `explorer_heads` chosen ones."""
    explorer_heads: int = 16


Index = Annotated[StrictInt, Field(ge=0)]
Matrix = Annotated[list[list[FiniteFloat]], Field(min_length=1)]


class TextAttention(BaseModel):
    """Analyse a transformer's attention on a text (or a pair of texts)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="TextAttention")

    text: Annotated[StrictStr, Field(min_length=1, description="The text to analyse.")]
    text_pair: Annotated[
        StrictStr | None, Field(default=None, description="A second text, encoded as a pair.")
    ]
    model: Annotated[
        StrictStr, Field(default="minilm", max_length=64, description="A registry name.")
    ]
    max_tokens: Annotated[
        StrictInt, Field(default=128, ge=2, description="Truncate the encoding to this many.")
    ]
    layers: Annotated[
        list[Index] | None,
        Field(
            default=None,
            min_length=1,
            description="Layers for the heatmap and matrices (default: all).",
        ),
    ]
    heads: Annotated[
        list[Index] | None,
        Field(
            default=None,
            min_length=1,
            description="Heads for the heatmap and matrices (default: all).",
        ),
    ]
    top_k: Annotated[
        StrictInt, Field(default=3, ge=1, description="Most-attended tokens listed per head.")
    ]
    return_matrices: Annotated[
        StrictBool, Field(default=False, description="Attach the weights (inline when small).")
    ]
    exclude_special: Annotated[
        StrictBool,
        Field(default=False, description="Leave special tokens out as queries and from top lists."),
    ]


class MatrixAttention(BaseModel):
    """Compute softmax(QKᵀ·scale)V on the given matrices, and explain the scaling."""

    model_config = ConfigDict(extra="forbid", strict=True, title="MatrixAttention")

    q: Annotated[Matrix, Field(description="Queries, n × d.")]
    k: Annotated[Matrix, Field(description="Keys, m × d.")]
    v: Annotated[Matrix, Field(description="Values, m × d_v.")]
    mask: Annotated[
        Literal["none", "causal"] | list[list[StrictBool]],
        Field(
            default="none",
            description="none, causal (key j ≤ query i), or an n × m boolean "
            "matrix where true means the query may attend to the key.",
        ),
    ]
    scale: Annotated[
        Literal["sqrt_dk", "none"] | Annotated[FiniteFloat, Field(gt=0)],
        Field(default="sqrt_dk", description="Multiply QKᵀ by 1/√d_k, by nothing, or by this."),
    ]


def _mode(params: Any) -> str:
    # Called with the raw dict when validating and with the model when serialising.
    if isinstance(params, MatrixAttention) or (isinstance(params, dict) and "q" in params):
        return "matrices"
    return "text"


class AttentionParams(RootModel[Any]):
    """Either mode; a body with `q` is matrices mode, anything else is text mode."""

    root: Annotated[
        Annotated[TextAttention, Tag("text")] | Annotated[MatrixAttention, Tag("matrices")],
        Discriminator(_mode),
    ]
    model_config = ConfigDict(title="AttentionParams")


def check_limits(params: AttentionParams, settings: Settings) -> list[FieldError]:
    if isinstance(params.root, MatrixAttention):
        return _check_matrices(params.root, settings)
    return _check_text(params.root, settings)


def _check_text(p: TextAttention, settings: Settings) -> list[FieldError]:
    limits: AttentionLimits = KIND.limits(settings)
    errors = []
    length = len(p.text) + len(p.text_pair or "")
    if length > limits.max_text_chars:
        errors.append(
            FieldError(
                "text",
                f"text and text_pair may hold {limits.max_text_chars} characters "
                f"together (max_text_chars); got {length}",
            )
        )
    if p.max_tokens > limits.max_tokens:
        errors.append(FieldError("max_tokens", f"must be at most {limits.max_tokens} (max_tokens)"))
    if p.top_k > limits.max_top_k:
        errors.append(FieldError("top_k", f"must be at most {limits.max_top_k} (max_top_k)"))
    for name in ("layers", "heads"):
        chosen = getattr(p, name)
        if chosen is not None and len(set(chosen)) != len(chosen):
            errors.append(FieldError(name, f"{name} must be distinct"))
    try:
        entry = resolve(p.model, settings.models_dir)
    except UnknownModel as exc:
        return [*errors, FieldError("model", str(exc))]
    shape = model_config(entry.path)
    for name, key in (("layers", "num_hidden_layers"), ("heads", "num_attention_heads")):
        chosen, size = getattr(p, name), shape.get(key)
        if chosen and isinstance(size, int) and max(chosen) >= size:
            errors.append(
                FieldError(name, f"{p.model} has {size} {name}, numbered 0 to {size - 1}")
            )
    return errors


def _check_matrices(p: MatrixAttention, settings: Settings) -> list[FieldError]:
    limits: AttentionLimits = KIND.limits(settings)
    errors: list[FieldError] = []
    widths = {}
    for name, matrix in (("q", p.q), ("k", p.k), ("v", p.v)):
        width = len(matrix[0])
        ragged = next((i for i, row in enumerate(matrix) if len(row) != width), None)
        if width == 0:
            errors.append(FieldError(f"{name}.0", "rows must not be empty"))
        elif ragged is not None:
            errors.append(
                FieldError(
                    f"{name}.{ragged}",
                    f"row {ragged} has {len(matrix[ragged])} "
                    f"numbers, row 0 has {width}: {name} must be rectangular",
                )
            )
        if len(matrix) > limits.max_rows:
            errors.append(FieldError(name, f"at most {limits.max_rows} rows (max_rows)"))
        if width > limits.max_dim:
            errors.append(FieldError(name, f"at most {limits.max_dim} columns (max_dim)"))
        widths[name] = width
    if errors:
        return errors
    n, m = len(p.q), len(p.k)
    if widths["q"] != widths["k"]:
        errors.append(
            FieldError(
                "k",
                f"q is {n}×{widths['q']} but k is {m}×{widths['k']}: "
                "q and k need the same width d_k",
            )
        )
    if len(p.v) != m:
        errors.append(FieldError("v", f"k has {m} rows but v has {len(p.v)}: one value per key"))
    if isinstance(p.mask, list):
        if len(p.mask) != n or any(len(row) != m for row in p.mask):
            errors.append(FieldError("mask", f"must be {n}×{m}, one row per query"))
        else:
            blocked = next((i for i, row in enumerate(p.mask) if not any(row)), None)
            if blocked is not None:
                errors.append(
                    FieldError(
                        f"mask.{blocked}",
                        f"row {blocked} blocks every key: softmax over nothing is undefined",
                    )
                )
    return errors


def brief(result: dict[str, Any]) -> str:
    """`minilm: 9 tokens, 6 layers × 12 heads`, or `3 × 4 queries × keys, d_k 8`."""
    if "shape" in result:
        shape = result["shape"]
        return f"{shape.get('n')} × {shape.get('m')} queries × keys, d_k {shape.get('d_k')}"
    info = result.get("model_info", {})
    tokens = len(result.get("tokens", []))
    return (
        f"{result.get('model')}: {tokens} tokens, "
        f"{info.get('layers')} layers × {info.get('heads')} heads"
    )


KIND = Kind(
    name="attention",
    summary="What a transformer attends to on a text, or softmax(QKᵀ/√d_k)V on given matrices.",
    params_model=AttentionParams,
    check_limits=check_limits,
    limits_type=AttentionLimits,
    time_limit=300,
    # The CPU by default; the GPU pool when a job asks for it and a GPU worker is online.
    pools=("cpu", "gpu"),
    brief=brief,
)
