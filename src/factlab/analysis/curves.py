"""Milestones of logged curves and the mean of per-seed records.

A milestone is the first logged step at which a metric crosses a level; `math.inf` means the
run never got there (a verdict treats that as starved, not as a result).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def first_step(rows: Sequence[dict[str, Any]], key: str, ok: Callable[[float], bool]) -> float:
    """The first logged step whose `key` (>= 0; -1 means not measured) satisfies `ok`."""
    for r in rows:
        v = r.get(key)
        if v is not None and v >= 0 and ok(v):
            return float(r["step"])
    return math.inf


def fraction_reached(rows: Sequence[dict[str, Any]], key: str, fraction: float) -> float:
    """First step at which a decreasing `key` has covered `fraction` of its total decrease."""
    first, final = rows[0][key], rows[-1][key]
    level = first - fraction * (first - final)
    return first_step(rows[1:], key, lambda v: v <= level)


def rose_in_tail(rows: Sequence[dict[str, Any]], key: str, tail: float = 0.2,
                 tol: float = 0.02) -> bool:
    """Whether an increasing `key` rose by more than `tol` over the last `tail` of the steps (a
    cheap tail test; `analysis.stats.still_improving` is the budget-extrapolation rule)."""
    end = rows[-1]["step"]
    ref = next((r for r in rows if r["step"] >= (1 - tail) * end), rows[-1])
    return rows[-1][key] - ref[key] > tol


def mean_record(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One record, the key-wise mean of per-seed records (numbers averaged, nested dicts recursed;
    inf stays). Not `analysis.seeds.mean_records`, which averages each cell of a table."""
    out: dict[str, Any] = {}
    for key, first in records[0].items():
        vals = [r[key] for r in records if key in r]
        if isinstance(first, dict):
            out[key] = mean_record(vals)
        elif isinstance(first, bool):
            out[key] = sum(vals) / len(vals) >= 0.5
        elif isinstance(first, (int, float)):
            out[key] = sum(vals) / len(vals)
    return out


def fmt_step(step: float) -> str:
    """A step for an evidence line ('never' for inf)."""
    return "never" if math.isinf(step) else str(int(round(step)))
