"""Monotone searches over a size: the geometric bisection of the capacity runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator


def bisect_steps(lo: int, hi: int, tolerance: float) -> Generator[int, bool, int]:
    """The capacity search as a coroutine: yields each n to probe, receives its success, and
    returns the largest n in [1, hi] that succeeds (assuming monotonicity), to within
    `tolerance`. Starts from the bracket [lo, hi] and falls back to [1, lo] when lo already
    fails; splits geometrically, since capacities span orders of magnitude. As a coroutine it
    serves both the one-seed loop (`bisect_largest`) and the lockstep ensemble of seeds."""
    if (yield hi):
        return hi
    if not (yield lo):
        lo, hi = 1, lo
    while hi / lo > tolerance and hi - lo > 1:
        mid = min(hi - 1, max(lo + 1, round(math.sqrt(lo * hi))))
        if (yield mid):
            lo = mid
        else:
            hi = mid
    return lo


def bisect_largest(lo: int, hi: int, succeeds: Callable[[int], bool], tolerance: float) -> int:
    """`bisect_steps` driven by `succeeds(n)`: the largest n that succeeds."""
    steps = bisect_steps(lo, hi, tolerance)
    n = next(steps)
    try:
        while True:
            n = steps.send(succeeds(n))
    except StopIteration as done:
        return done.value
