"""The contract of `stairs`: ways to climb n stairs with steps from a set, exact or modulo m.

What the API checks before a job exists: the params, the named limits, the pool. The compute
(GMP's `fib`, fast doubling, Kitamasa's method) is the worker's: `worker/kinds/stairs.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from shared.config import Settings
from shared.kinds.base import FieldError, Kind


@dataclass(frozen=True)
class StairsLimits:
    """How far `stairs` goes before a job is refused; each name appears in the error it causes."""

    max_n_fib: int = 10_000_000
    """Exact answers for steps [1, 2] (Fibonacci): F(10^7 + 1) has 2,089,877 digits."""
    max_n_exact: int = 1_000_000
    """Exact answers for any other step set."""
    max_n_modular: int = 10**18
    max_step: int = 50
    max_modulus: int = 10**18
    inline_digits: int = 100_000
    """Longer values are stored as the artifact value.txt instead of inline."""


class StairsParams(BaseModel):
    """Parameters of a `stairs` job."""

    model_config = ConfigDict(extra="forbid", strict=True, title="StairsParams")

    n: Annotated[StrictInt, Field(ge=0, description="How many stairs to climb.")]
    steps: Annotated[
        list[Annotated[StrictInt, Field(ge=1)]],
        Field(
            default=[1, 2],
            min_length=1,
            json_schema_extra={"uniqueItems": True},
            description="The step sizes allowed: distinct positive integers.",
        ),
    ]
    modulus: Annotated[
        StrictInt | None,
        Field(
            default=None,
            ge=2,
            description="Answer modulo this number; exact when absent.",
        ),
    ]

    @field_validator("steps")
    @classmethod
    def _distinct(cls, steps: list[int]) -> list[int]:
        # A duplicate would silently count that step twice.
        if len(set(steps)) != len(steps):
            raise ValueError("steps must be distinct")
        return sorted(steps)


def check_limits(params: StairsParams, settings: Settings) -> list[FieldError]:
    """The named limits of config, each checked against the params a client sent."""
    limits: StairsLimits = KIND.limits(settings)
    errors = []
    if max(params.steps) > limits.max_step:
        errors.append(FieldError("steps", f"the largest step may be {limits.max_step} (max_step)"))
    if params.modulus is not None:
        if params.modulus > limits.max_modulus:
            errors.append(
                FieldError("modulus", f"must be at most {limits.max_modulus} (max_modulus)")
            )
        if params.n > limits.max_n_modular:
            errors.append(
                FieldError("n", f"must be at most {limits.max_n_modular} (max_n_modular)")
            )
    elif params.steps == [1, 2]:
        if params.n > limits.max_n_fib:
            errors.append(
                FieldError(
                    "n",
                    f"must be at most {limits.max_n_fib} (max_n_fib) for an exact answer "
                    "with steps [1, 2]; give a modulus for larger n",
                )
            )
    elif params.n > limits.max_n_exact:
        errors.append(
            FieldError(
                "n",
                f"must be at most {limits.max_n_exact} (max_n_exact) for an exact answer "
                "with these steps; give a modulus for larger n",
            )
        )
    return errors


def brief(result: dict[str, Any]) -> str:
    """`89`, or `35422484817926191507…54150875 (209 digits)` for a value kept as an artifact."""
    if "value" in result:
        text = str(result["value"])
    else:
        text = f"{result.get('leading', '')}…{result.get('trailing', '')}"
        text += f" ({result.get('digits')} digits)"
    if result.get("modulus") is not None:
        text += f" mod {result['modulus']}"
    return text


KIND = Kind(
    name="stairs",
    summary="Ways to climb n stairs with steps from a set, exact or modulo m.",
    params_model=StairsParams,
    check_limits=check_limits,
    limits_type=StairsLimits,
    time_limit=120,
    pools=("cpu",),
    brief=brief,
)
