"""Runs a `stairs` job: the pure `ways` of shared.kinds.stairs, then the result's shape."""

from __future__ import annotations

from shared.config import Settings
from shared.kinds import Outcome
from shared.kinds.stairs import StairsParams, describe, ways


def run(params: StairsParams, settings: Settings) -> Outcome:
    value = ways(params.n, params.steps, params.modulus)
    return describe(value, params.modulus, params.steps, settings)
