"""The stairs kind's compute against its floor: gmpy2's fib plus digits, and the O(n) loop.

Ladder's runner (ways + the result's shape, including the decimal string) is timed against
the least any implementation must do for an exact answer: gmpy2.fib(n + 1) and .digits().
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import gmpy2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, write_section
from shared.kinds.stairs import StairsLimits
from worker.kinds.stairs import describe, ways

LIMITS = StairsLimits()


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def loop(n: int) -> str:
    """The textbook O(n) loop, with gmpy2 for the digits (str() would be quadratic)."""
    a, b = 1, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return gmpy2.mpz(b).digits()


def floor(n: int) -> str:
    return gmpy2.fib(n + 1).digits()


def ladder(n: int, steps: list[int] | None = None, modulus: int | None = None) -> object:
    """What the stairs runner does: ways(), then the result's shape (digits, value.txt)."""
    steps = steps or [1, 2]
    return describe(ways(n, steps, modulus), modulus, steps, LIMITS)


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> None:
    rows = []
    for n in (10**5, 10**6, 10**7):
        repeat = 5 if n < 10**7 else 3
        ours = best_of(lambda n=n: ladder(n), repeat)
        base = best_of(lambda n=n: floor(n), repeat)
        naive = fmt(best_of(lambda n=n: loop(n), 3)) if n <= 10**5 else "—"
        rows.append(
            f"| 10^{len(str(n)) - 1} | {fmt(ours)} | {fmt(base)} | {ours / base:.2f}× | {naive} |"
        )
    others = []
    for label, call in [
        ("n = 10^6, steps 1..3, exact", lambda: ladder(10**6, [1, 2, 3])),
        ("n = 10^6, steps 1..50, exact", lambda: ladder(10**6, list(range(1, 51)))),
        ("n = 10^18, steps [1, 2], mod 10^9+7", lambda: ladder(10**18, None, 10**9 + 7)),
        (
            "n = 10^18, steps 1..50, mod 10^9+7",
            lambda: ladder(10**18, list(range(1, 51)), 10**9 + 7),
        ),
    ]:
        others.append(f"| {label} | {fmt(best_of(call, 3))} |")
    table = "\n".join(rows)
    other_table = "\n".join(others)
    write_section(
        "Stairs compute against the gmpy2 floor",
        f"""
Best of 3–5 runs in one process, {machine()}, {time.strftime("%Y-%m-%d")}. *Ladder*: the worker's
runner (ways, then the result: digits, and value.txt past 100,000 digits). *Floor*: gmpy2
`fib(n + 1).digits()` alone. *O(n) loop*: Python big-int additions, then gmpy2 digits.

| n, steps [1, 2] | Ladder | floor | Ladder / floor | O(n) loop |
| --- | ---: | ---: | ---: | ---: |
{table}

Other step sets (Kitamasa: x^n modulo the characteristic polynomial, O(K² log n)):

| job | Ladder |
| --- | ---: |
{other_table}
""",
    )


if __name__ == "__main__":
    main()
