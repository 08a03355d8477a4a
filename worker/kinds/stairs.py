"""Runs a `stairs` job: the number of ways to climb n stairs with steps from a set.

ways(n, steps) counts the ordered sequences of steps that sum to n. It obeys the recurrence
a(n) = Σ_{s ∈ steps} a(n − s) with a(0) = 1, so [1, 2] gives the Fibonacci numbers:
ways(n) = F(n + 1). Large n never loops n times: [1, 2] uses GMP's `fib` (exact) or fast
doubling (modular); any other set uses Kitamasa's method, x^n reduced modulo the
recurrence's characteristic polynomial by repeated squaring: O(K² log n) for K = max(steps).

Only Kitamasa's exact runs last long enough to report progress (seconds at n = 10^6 with
steps 1..50); GMP's `fib` is one call, and fast doubling takes at most 60 steps on numbers
below the modulus² (microseconds at the limits).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gmpy2

from shared.kinds import Outcome
from shared.kinds.stairs import KIND, StairsLimits, StairsParams
from worker.context import RunContext
from worker.progress import Report, ignore

QUIET_SECONDS = 0.1
"""Kitamasa reports progress only once it has run this long: a short run never pays for it."""
SQUARING_COST = 1.4
"""In an exact run the coefficients grow with the exponent, and a squaring's time grows about as
the exponent to this power (GMP's multiplication at these sizes; measured at n = 200,000, steps
1..50, where the last squaring alone takes 61 % of the time): what each step's share is."""


def run(params: StairsParams, context: RunContext) -> Outcome:
    value = ways(params.n, params.steps, params.modulus, context.progress)
    return describe(value, params.modulus, params.steps, KIND.limits(context.settings))


def ways(
    n: int,
    steps: list[int] | tuple[int, ...] = (1, 2),
    modulus: int | None = None,
    report: Report = ignore,
) -> int:
    """The number of ordered step sequences from `steps` summing to `n`, optionally mod `modulus`;
    a long run tells `report` how far it has come.

    >>> ways(10)
    89
    >>> ways(10, [1, 3, 5], modulus=7)
    5
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    steps = sorted(set(steps))
    if steps == [1, 2]:
        return int(gmpy2.fib(n + 1)) if modulus is None else _fib_mod(n + 1, modulus)
    return _kitamasa(n, steps, modulus, report)


def _fib_mod(n: int, m: int) -> int:
    """F(n) mod m by fast doubling: F(2k) = F(k)(2F(k+1) − F(k)), F(2k+1) = F(k)² + F(k+1)²."""
    a, b = gmpy2.mpz(0), gmpy2.mpz(1)  # F(0), F(1)
    for bit in bin(n)[2:]:
        a, b = (a * (2 * b - a)) % m, (a * a + b * b) % m
        if bit == "1":
            a, b = b, (a + b) % m
    return int(a)


def _kitamasa(n: int, steps: list[int], modulus: int | None, report: Report = ignore) -> int:
    order = steps[-1]
    # a(0..order-1) by the plain recurrence: order is small (≤ max_step).
    initial = [0] * order
    for i in range(order):
        initial[i] = 1 if i == 0 else sum(initial[i - s] for s in steps if s <= i)
    if n < order:
        value = initial[n]
        return value if modulus is None else value % modulus
    # x^order ≡ Σ_s x^(order − s), the characteristic polynomial, as coefficients of x^0..x^(K-1).
    recurrence = [0] * order
    for s in steps:
        recurrence[order - s] = 1
    coefficients = _power_of_x(n, recurrence, modulus, report)
    value = sum(c * a for c, a in zip(coefficients, initial, strict=True))
    return int(value if modulus is None else value % modulus)


def _power_of_x(
    n: int, recurrence: list[int], modulus: int | None, report: Report = ignore
) -> list[Any]:
    """Coefficients of x^n modulo the characteristic polynomial, by binary exponentiation."""
    order = len(recurrence)
    result: list[Any] = [gmpy2.mpz(0)] * order
    result[0] = gmpy2.mpz(1)
    bits = bin(n)[2:]
    started = time.perf_counter()
    exponent, done = 0, 0.0
    for step, bit in enumerate(bits, 1):
        exponent = 2 * exponent + (bit == "1")
        share = (exponent / n) ** SQUARING_COST if modulus is None else step / len(bits)
        rows = None
        if report is not ignore and time.perf_counter() - started > QUIET_SECONDS:
            rows = _rows(report, done, share, order, step, len(bits))
        result = _mulmod(result, result, recurrence, modulus, rows)
        if bit == "1":
            result = _times_x(result, recurrence, modulus)
        done = share
    return result


def _rows(
    report: Report, low: float, high: float, order: int, step: int, steps: int
) -> Callable[[int], None]:
    """What a squaring calls after each row of its product: the share of the step done."""

    def row(i: int) -> None:
        report(low + (high - low) * (i + 1) / order, "kitamasa", step=step, steps=steps)

    return row


def _mulmod(
    a: list[Any],
    b: list[Any],
    recurrence: list[int],
    modulus: int | None,
    on_row: Callable[[int], None] | None = None,
) -> list[Any]:
    order = len(recurrence)
    product: list[Any] = [gmpy2.mpz(0)] * (2 * order - 1)
    for i, ai in enumerate(a):
        if ai:
            for j, bj in enumerate(b):
                product[i + j] += ai * bj
        # The products are nearly all of a squaring's time; the fold below is additions.
        if on_row is not None:
            on_row(i)
    # Fold each x^d with d ≥ order back down using x^order = Σ recurrence[i]·x^i.
    for d in range(2 * order - 2, order - 1, -1):
        top = product[d]
        if top:
            shift = d - order
            for i, r in enumerate(recurrence):
                if r:
                    product[shift + i] += top
    reduced = product[:order]
    return reduced if modulus is None else [c % modulus for c in reduced]


def _times_x(a: list[Any], recurrence: list[int], modulus: int | None) -> list[Any]:
    top = a[-1]
    shifted = [gmpy2.mpz(0), *a[:-1]]
    if top:
        shifted = [c + top * r for c, r in zip(shifted, recurrence, strict=True)]
    return shifted if modulus is None else [c % modulus for c in shifted]


def describe(value: int, modulus: int | None, steps: list[int], limits: StairsLimits) -> Outcome:
    """The result of a job: the value inline, or as the artifact value.txt when it is huge."""
    digits_text = gmpy2.mpz(value).digits()  # gmpy2: Python's str(int) is quadratic and capped.
    algorithm = "fib" if steps == [1, 2] else "kitamasa"
    if steps == [1, 2] and modulus is not None:
        algorithm = "fib_doubling"
    result: dict[str, Any] = {
        "digits": len(digits_text),
        "modulus": modulus,
        "algorithm": algorithm,
        "steps": steps,
    }
    if len(digits_text) <= limits.inline_digits:
        return Outcome(result={"value": digits_text, **result})
    result.update(
        leading=digits_text[:20],
        trailing=digits_text[-20:],
        artifact="value.txt",
    )
    return Outcome(result=result, artifacts={"value.txt": ("text/plain", digits_text.encode())})
