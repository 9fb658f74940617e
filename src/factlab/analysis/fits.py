"""Curve fits that verdicts read: a power law on log-log axes and a polylog power.

Both are least-squares lines in transformed coordinates, so they are exact for exact laws:
y = c x^b gives `loglog_slope` b, and y = c (ln x)^p gives `polylog_power` p.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of ln y on ln x (needs >= 2 finite positive points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        raise ValueError("a log-log fit needs at least two finite positive points")
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(slope), float(intercept)


def polylog_power(x: Sequence[float], y: Sequence[float]) -> float:
    """p of y = c (ln x)^p: the slope of ln y on ln ln x (needs x > 1)."""
    x = np.asarray(x, float)
    return loglog_slope(np.log(x), y)[0]


def growth_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Power-law slope b (y ~ x^b) and polylog power p (y ~ (ln x)^p) of the same points."""
    slope, intercept = loglog_slope(x, y)
    return {"slope": slope, "intercept": intercept, "polylog_power": polylog_power(x, y)}
