"""ways() against a brute-force oracle, and the params' validation and limits."""

from __future__ import annotations

import math
import random

import gmpy2
import pytest

from shared.config import Settings
from shared.kinds import InvalidParams, stairs
from shared.kinds.stairs import StairsLimits
from tests.support import oracle
from worker.kinds.stairs import _kitamasa, describe, ways


def test_leetcode_70_is_fibonacci() -> None:
    assert [ways(n) for n in range(8)] == [1, 1, 2, 3, 5, 8, 13, 21]
    assert ways(10) == 89


def test_zero_stairs_have_one_way_whatever_the_steps() -> None:
    for steps in ([1, 2], [3], [2, 5, 7]):
        assert ways(0, steps) == 1
        assert ways(0, steps, 7) == 1


def test_unreachable_heights_have_no_way() -> None:
    assert ways(7, [2]) == 0
    assert ways(5, [3, 4]) == 0


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_oracle_on_random_cases(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        steps = rng.sample(range(1, 13), rng.randint(1, 5))
        n = rng.randint(0, 400)
        modulus = rng.choice([None, 2, 3, 97, 1_000, 10**9 + 7, 2**61 - 1])
        assert ways(n, steps, modulus) == oracle(n, sorted(steps), modulus), (n, steps, modulus)


def test_fibonacci_paths_agree_with_the_oracle() -> None:
    for n in range(0, 300, 7):
        assert ways(n) == oracle(n, [1, 2])
        assert ways(n, [1, 2], 1_000_003) == oracle(n, [1, 2], 1_000_003)


def test_huge_n_with_a_modulus() -> None:
    # Pisano period of 10 is 60: F(10^18 + 1) mod 10 = F((10^18 + 1) mod 60) mod 10 = F(1).
    assert ways(10**18, [1, 2], 10) == 1
    # The Kitamasa path agrees with fast doubling on the Fibonacci recurrence.
    assert _kitamasa(10**18, [1, 2], 10**9 + 7) == ways(10**18, [1, 2], 10**9 + 7)


def test_exact_fibonacci_is_gmp_sized() -> None:
    digits = gmpy2.mpz(ways(100_000)).digits()  # str() refuses more than 4,300 digits
    # F(m) has floor(m·log10 φ − log10 √5) + 1 digits.
    phi = (1 + math.sqrt(5)) / 2
    assert len(digits) == math.floor(100_001 * math.log10(phi) - math.log10(math.sqrt(5))) + 1
    assert ways(100_000) == ways(99_999) + ways(99_998)


def parse(params: object, settings: Settings | None = None) -> stairs.StairsParams:
    model = stairs.KIND.parse(params, settings or Settings())
    assert isinstance(model, stairs.StairsParams)
    return model


def fields_of(params: object, settings: Settings | None = None) -> list[str]:
    with pytest.raises(InvalidParams) as caught:
        parse(params, settings)
    return [e.field for e in caught.value.errors]


def test_defaults_and_sorting() -> None:
    assert parse({"n": 10}).steps == [1, 2]
    assert parse({"n": 10, "steps": [3, 1]}).steps == [1, 3]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"n": -1}, "params.n"),
        ({"n": 5.0}, "params.n"),
        ({"n": "5"}, "params.n"),
        ({"n": True}, "params.n"),
        ({"n": None}, "params.n"),
        ({}, "params.n"),
        ({"n": 5, "steps": []}, "params.steps"),
        ({"n": 5, "steps": [1, 1]}, "params.steps"),
        ({"n": 5, "steps": [0, 1]}, "params.steps.0"),
        ({"n": 5, "steps": [-2]}, "params.steps.0"),
        ({"n": 5, "steps": [1.5]}, "params.steps.0"),
        ({"n": 5, "steps": "12"}, "params.steps"),
        ({"n": 5, "modulus": 1}, "params.modulus"),
        ({"n": 5, "modulus": 7.0}, "params.modulus"),
        ({"n": 5, "colour": "red"}, "params.colour"),
    ],
)
def test_bad_params_name_their_field(params: dict[str, object], field: str) -> None:
    assert field in fields_of(params)


def test_limits_are_named_in_the_error() -> None:
    settings = Settings(limits={"stairs": StairsLimits(max_n_fib=100, max_n_exact=50, max_step=5)})
    with pytest.raises(InvalidParams) as caught:
        parse({"n": 101}, settings)
    assert "max_n_fib" in str(caught.value) and "100" in str(caught.value)
    with pytest.raises(InvalidParams, match="max_n_exact"):
        parse({"n": 51, "steps": [1, 3]}, settings)
    with pytest.raises(InvalidParams, match="max_step"):
        parse({"n": 5, "steps": [6]}, settings)
    with pytest.raises(InvalidParams, match="max_n_modular"):
        parse({"n": 10**19, "modulus": 7}, settings)
    assert parse({"n": 10**18, "modulus": 7}, settings).n == 10**18
    assert parse({"n": 100}, settings).n == 100


def test_default_limits_follow_the_contract() -> None:
    limits = StairsLimits()
    assert limits.max_n_fib == 10_000_000
    assert limits.max_n_modular == 10**18


def test_huge_values_become_an_artifact() -> None:
    limits = StairsLimits(inline_digits=50)
    value = ways(300)  # 63 digits
    outcome = describe(value, None, [1, 2], limits)
    assert "value" not in outcome.result
    assert outcome.result["digits"] == 63
    assert outcome.result["leading"] == str(value)[:20]
    assert outcome.result["trailing"] == str(value)[-20:]
    assert outcome.artifacts["value.txt"] == ("text/plain", str(value).encode())
    small = describe(89, None, [1, 2], limits)
    assert small.result == {
        "value": "89",
        "digits": 2,
        "modulus": None,
        "algorithm": "fib",
        "steps": [1, 2],
    }
