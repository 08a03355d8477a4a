"""The registry of job kinds. Each kind is one module here; nothing else names them one by one."""

from __future__ import annotations

from shared.kinds import attention, generate, stairs
from shared.kinds.base import FieldError, InvalidParams, Kind, Outcome

__all__ = ["FieldError", "InvalidParams", "Kind", "Outcome", "enabled", "get"]

_ALL: tuple[Kind, ...] = (stairs.KIND, attention.KIND, generate.KIND)


def enabled() -> dict[str, Kind]:
    """The kinds this installation can run, by name."""
    return {kind.name: kind for kind in _ALL if kind.enabled()}


def get(name: str) -> Kind | None:
    return enabled().get(name)
