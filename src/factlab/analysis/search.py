"""Searches over a size: the geometric bisection of the capacity runs, and the per-size bracket
of the IC-recall sample-complexity runs (three-state probes, no monotonicity across sizes)."""

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


def bracket_min_steps(lo: int, hi: int, ratio: float
                      ) -> Generator[int, str, dict[str, int | str | None]]:
    """The smallest n in [lo, hi] whose probe succeeds, as a coroutine over three-state probes.

    Yields each n to probe and receives its outcome: "success", "fail" or "inconclusive" (a
    probe that could not decide, e.g. a budget hit while still improving). Each call brackets
    one size on its own: it assumes monotonicity in n inside the bracket only, never across
    sizes. Probes hi first (a failure there puts the target above the bracket), then lo (a
    success there puts it at or below lo), then bisects geometrically until hi / lo <= ratio.
    Returns {"status", "n_min", "lo_fail", "hi_ok", "n_probes"} with status one of "found",
    "above_bracket", "below_bracket" or "inconclusive" (an undecided probe on the path; n_min
    is then the smallest success seen, an upper bound).
    """
    probes = 0

    def result(status: str, n_min: int | None, lo_fail: int | None, hi_ok: int | None
               ) -> dict[str, int | str | None]:
        return {"status": status, "n_min": n_min, "lo_fail": lo_fail, "hi_ok": hi_ok,
                "n_probes": probes}

    outcome = yield hi
    probes += 1
    if outcome != "success":
        return result("above_bracket" if outcome == "fail" else "inconclusive", None, None, None)
    outcome = yield lo
    probes += 1
    if outcome == "success":
        return result("below_bracket", lo, None, lo)
    undecided = outcome == "inconclusive"
    lo_fail, hi_ok = lo, hi
    while hi_ok / lo_fail > ratio and hi_ok - lo_fail > 1:
        mid = min(hi_ok - 1, max(lo_fail + 1, round(math.sqrt(lo_fail * hi_ok))))
        outcome = yield mid
        probes += 1
        if outcome == "success":
            hi_ok = mid
        else:  # an undecided probe counts as not-yet-success, and marks the result
            undecided = undecided or outcome == "inconclusive"
            lo_fail = mid
    return result("inconclusive" if undecided else "found", hi_ok, lo_fail, hi_ok)


def drive(steps: Generator[int, str, dict], probe: Callable[[int], str]) -> dict:
    """Run a search coroutine such as `bracket_min_steps` with `probe(n) -> outcome`."""
    n = next(steps)
    try:
        while True:
            n = steps.send(probe(n))
    except StopIteration as done:
        return done.value


def frontier(acc: dict[tuple[int, int], float], threshold: float) -> dict[int, int]:
    """Success frontier of a 2-D grid: row key -> the smallest column whose value reaches
    `threshold` (e.g. heads H -> the smallest MLP width m); rows with none are left out."""
    out = {}
    for row in sorted({r for r, _ in acc}):
        ok = sorted(c for (r, c), a in acc.items() if r == row and a >= threshold)
        if ok:
            out[row] = ok[0]
    return out


def longest_run(steps: list[int], inside: list[bool]) -> tuple[int, int] | None:
    """(first, last) step of the longest run of consecutive True entries (longest in steps),
    or None when there is none."""
    best, start = None, None
    for step, flag in zip(steps, inside):
        if not flag:
            start = None
            continue
        start = step if start is None else start
        if best is None or step - start > best[1] - best[0]:
            best = (start, step)
    return best
