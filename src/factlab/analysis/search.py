"""Searches over a size: the geometric bisection of the capacity runs, and the per-size grid
search of the IC-recall sample-complexity runs (three-state probes, no monotonicity across
sizes)."""

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


def geometric_grid(lo: int, hi: int, ratio: float) -> list[int]:
    """The integers lo * ratio^j (rounded, distinct) up to hi, hi itself the last point."""
    grid, j = [], 0
    while (n := round(lo * ratio ** j)) < hi:
        if not grid or n > grid[-1]:
            grid.append(n)
        j += 1
    return grid + [hi]


def grid_min_steps(lo: int, hi: int, ratio: float, guess: int | None = None,
                   stride_factor: float = 4.0
                   ) -> Generator[int, str, dict[str, int | str | None]]:
    """The smallest n of `geometric_grid(lo, hi, ratio)` whose probe succeeds, as a coroutine
    over three-state probes ("success", "fail", "inconclusive": e.g. a budget hit while still
    improving).

    Each call searches one size on its own: it assumes monotonicity in n inside [lo, hi] only,
    never across sizes. It starts at the grid point nearest `guess` (default: the middle),
    gallops by `stride_factor` (doubling the stride) down after a success or up after a
    failure until the target is bracketed, then bisects the grid indices. Because the answer
    is a grid point, the guess changes how many probes the search takes, never what it returns
    (under that monotonicity); a good guess spares the costly probes near hi. An undecided
    probe counts as not-yet-success and marks the result. Returns {"status", "n_min",
    "lo_fail", "hi_ok", "n_probes"}, status one of "found", "above_bracket" (hi did not
    succeed), "below_bracket" (lo succeeded) or "inconclusive" (an undecided probe on the path;
    n_min is then the smallest success seen, an upper bound).
    """
    grid = geometric_grid(lo, hi, ratio)
    last = len(grid) - 1
    start = last // 2 if guess is None else min(
        range(len(grid)), key=lambda i: abs(math.log(grid[i] / max(guess, 1))))
    stride = max(1, round(math.log(stride_factor) / math.log(ratio)))
    fail, ok = -1, len(grid)  # largest index known not to succeed, smallest known to succeed
    probes, undecided = 0, False

    def probe(i: int) -> Generator[int, str, None]:
        nonlocal fail, ok, probes, undecided
        outcome = yield grid[i]
        probes += 1
        if outcome == "success":
            ok = i
        else:
            fail, undecided = i, undecided or outcome == "inconclusive"

    yield from probe(start)
    step = stride
    while ok == len(grid) and fail < last:  # gallop up until something succeeds
        yield from probe(min(last, fail + step))
        step *= 2
    step = stride
    while fail == -1 and ok > 0:  # gallop down until something fails
        yield from probe(max(0, ok - step))
        step *= 2
    while ok - fail > 1 and ok < len(grid) and fail >= 0:
        yield from probe((fail + ok) // 2)
    n_min = grid[ok] if ok < len(grid) else None
    lo_fail = grid[fail] if fail >= 0 else None
    if undecided:
        status = "inconclusive"
    elif ok == len(grid):
        status = "above_bracket"
    elif fail == -1:
        status = "below_bracket"
    else:
        status = "found"
    return {"status": status, "n_min": n_min, "lo_fail": lo_fail, "hi_ok": n_min,
            "n_probes": probes}


def typical_probes(lo: int, hi: int, ratio: float, stride_factor: float = 4.0) -> int:
    """Probes of a `grid_min_steps` search whose guess is within one stride of the target:
    the guess, one galloping step, then the bisection of that stride."""
    stride = max(1, round(math.log(stride_factor) / math.log(ratio)))
    points = len(geometric_grid(lo, hi, ratio))
    return min(points, 2 + math.ceil(math.log2(stride)))


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
