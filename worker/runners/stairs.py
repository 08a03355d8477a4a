"""Runs a `stairs` job: the pure `ways` of shared.kinds.stairs, then the result's shape."""

from __future__ import annotations

from shared.kinds import Outcome
from shared.kinds.stairs import StairsParams, describe, ways
from worker.context import RunContext


def run(params: StairsParams, context: RunContext) -> Outcome:
    value = ways(params.n, params.steps, params.modulus)
    return describe(value, params.modulus, params.steps, context.settings)
