"""The registry of job kinds. Each kind is one module here; nothing else names them one by one."""

from __future__ import annotations

from shared.config import Settings
from shared.kinds import attention, generate, stairs
from shared.kinds.base import FieldError, InvalidParams, Kind, Outcome

__all__ = ["FieldError", "InvalidParams", "Kind", "Outcome", "check_settings", "enabled", "get"]

_ALL: tuple[Kind, ...] = (stairs.KIND, attention.KIND, generate.KIND)


def enabled() -> dict[str, Kind]:
    """The kinds this installation can run, by name."""
    return {kind.name: kind for kind in _ALL if kind.enabled()}


def get(name: str) -> Kind | None:
    return enabled().get(name)


def check_settings(settings: Settings) -> None:
    """Read every kind's limits once, so that a malformed `LADDER_<KIND>_<NAME>` stops a
    process at its start, not each request later; ValueError naming the variable."""
    for kind in enabled().values():
        try:
            kind.limits(settings)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"LADDER_{kind.name.upper()}_*: {exc}") from None
