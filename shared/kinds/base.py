"""What a job kind declares: its params model, limits, pools, and what a run produces."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, RootModel, ValidationError

from shared.config import Settings


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a request, named by its dotted field path."""

    field: str
    message: str


class InvalidParams(Exception):
    """The params of a job break its kind's schema or limits."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


@dataclass
class Outcome:
    """What a runner returns: the result object and any files (name → (content type, bytes))."""

    result: dict[str, Any]
    artifacts: dict[str, tuple[str, bytes]] = field(default_factory=dict)


@dataclass(frozen=True)
class Kind:
    """A job kind. Registering one in `shared.kinds` is all the API needs to accept it."""

    name: str
    summary: str
    params_model: type[BaseModel]
    check_limits: Callable[[Any, Settings], list[FieldError]]
    limits_type: type[Any]
    """A frozen dataclass of the kind's named limits; `LADDER_<KIND>_<NAME>` sets each."""
    time_limit: int
    """Seconds a job may run before it is stopped; `LADDER_TIME_LIMIT_<KIND>` sets it."""
    pools: tuple[str, ...] = ("cpu",)
    """Where it may run, preferred first: `device: auto` takes the first with a live worker."""
    check_device: Callable[[Any, str, Settings], list[FieldError]] = lambda params, pool, s: []
    """What the chosen pool cannot do with these params (a precision a CPU lacks, say)."""
    stops_itself: bool = False
    """Whether a running job notices a cancel between steps; if not, its process is killed."""
    batches: bool = False
    """Whether a worker runs many of its jobs together: its messages then go to a queue of
    their own per pool (`cpu.generate`), served by a threads pool (see shared.producer)."""
    enabled: Callable[[], bool] = lambda: True
    brief: Callable[[dict[str, Any]], str] = lambda result: ""
    """A line about a result for listings, which carry no params or result (see `outline`)."""

    def outline(self, result: dict[str, Any]) -> str:
        """`brief`, on one line and at most SUMMARY_CHARS long."""
        return one_line(self.brief(result))

    def limits(self, settings: Settings) -> Any:
        """The limits in force: the settings' own object for this kind, else the defaults with
        any `LADDER_<KIND>_<NAME>` variable applied."""
        given = settings.limits.get(self.name)
        if given is not None:
            return given
        prefix = f"LADDER_{self.name.upper()}_"
        return self.limits_type(
            **{
                f.name: int(settings.env[var])
                for f in dataclasses.fields(self.limits_type)
                if (var := prefix + f.name.upper()) in settings.env
            }
        )

    def time_limit_for(self, settings: Settings) -> int:
        return settings.time_limits.get(self.name, self.time_limit)

    def parse(self, params: Any, settings: Settings) -> BaseModel:
        """Validate raw params against the schema, then the limits; raise InvalidParams."""
        if not isinstance(params, dict):
            raise InvalidParams([FieldError("params", "must be an object")])
        # A RootModel over a tagged union puts the tag first in each error's location.
        skip = 1 if issubclass(self.params_model, RootModel) else 0
        try:
            model = self.params_model.model_validate(params)
        except ValidationError as exc:
            raise InvalidParams(
                [
                    FieldError(
                        ".".join(["params", *(str(p) for p in e["loc"][skip:])]),
                        _message(e),
                    )
                    for e in exc.errors()
                ]
            ) from None
        errors = [
            FieldError(f"params.{e.field}", e.message) for e in self.check_limits(model, settings)
        ]
        if errors:
            raise InvalidParams(errors)
        return model

    def json_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()


SUMMARY_CHARS = 200
"""The width of the jobs table's `summary` column."""


def one_line(text: str) -> str:
    """Whitespace folded to single spaces and cut to SUMMARY_CHARS, an ellipsis saying so."""
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _message(error: Any) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
