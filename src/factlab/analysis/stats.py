"""Small statistics that verdicts share: rank correlation, and whether a run was starved."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    def ranks(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # average the ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def still_improving(steps: Sequence[int], values: Sequence[float], target: float,
                    window: float = 0.25) -> bool:
    """Whether a run that stopped on its step budget short of `target` was still climbing.

    True when the best-so-far value rose over the last `window` of the run fast enough that,
    continued linearly for as many steps again as the run took (twice the budget), it would
    reach `target`: then the budget, not the model, may be what stopped it, and a verdict
    that reads this run as a failure is starved. False once `target` is reached or the curve
    is flat or falling. `steps` ascend; `values` are the metric at those steps (e.g. accuracy).
    """
    if len(steps) < 2:
        return False
    best = np.maximum.accumulate(np.asarray(values, dtype=float))
    if best[-1] >= target:
        return False
    end = steps[-1]
    i = max(j for j, s in enumerate(steps) if s <= end * (1 - window) or j == 0)
    span, rise = end - steps[i], best[-1] - best[i]
    if span <= 0 or rise <= 0:
        return False
    return bool(best[-1] + rise / span * end >= target)
