"""A runner per job kind, in the module named after it: `run(params, context) -> Outcome`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from shared.kinds import Outcome
from worker.context import RunContext

Runner = Callable[[Any, RunContext], Outcome]


def runner_for(kind: str) -> Runner:
    """The `run` function of `worker.kinds.<kind>`; imported on first use (it may need torch)."""
    module = importlib.import_module(f"{__name__}.{kind}")
    run: Runner = module.run
    return run
