"""Seed aggregation for verdicts judged on records: one judge, every seed, and the seed mean.

A family writes one `judge(cells) -> Verdict` over the records of one seed (one record per
grid cell). `over_seeds` calls it for each seed and for the seed-mean records (each numeric
field averaged over seeds cell by cell, NaNs skipped, equal-length lists element-wise; a flag
is set when any seed set it),
then combines them with `verdicts.combine_seeds`: holds/fails when the mean's state is shared
by at least two thirds of the seeds, else inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from factlab.analysis.verdicts import Verdict, combine_seeds, spread

Judge = Callable[[list[dict[str, Any]]], Verdict]


def _mean(values: list[Any]) -> Any:
    if all(isinstance(v, bool) for v in values):
        return any(values)
    if all(isinstance(v, list) and len(v) == len(values[0]) for v in values) and values[0]:
        return [_mean(list(col)) for col in zip(*values)]  # per-item lists: element-wise
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        finite = [float(v) for v in values if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else float("nan")
    return values[0]


def mean_records(rows: Sequence[dict[str, Any]], cell_keys: Sequence[str],
                 ) -> list[dict[str, Any]]:
    """One record per cell (the values of `cell_keys`), each field averaged over seeds."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault(tuple(row[k] for k in cell_keys), []).append(row)
    out = []
    for group in cells.values():
        keys = [k for k in group[0] if all(k in g for g in group)]
        out.append({k: _mean([g[k] for g in group]) for k in keys})
    return out


def over_seeds(rows: Sequence[dict[str, Any]], judge: Judge, cell_keys: Sequence[str],
               spread_of: Sequence[str] = ()) -> Verdict:
    """`judge` on every seed's records and on the seed means, combined with `combine_seeds`.

    The evidence is the mean's, followed by mean [min, max] over seeds of each metric named
    in `spread_of` (read from the per-seed verdicts' metrics).
    """
    seeds = sorted({r["seed"] for r in rows})
    per_seed = [judge([r for r in rows if r["seed"] == s]) for s in seeds]
    mean = judge(mean_records(rows, cell_keys))
    parts = [mean.evidence]
    for name in spread_of:
        values = [v.metrics.get(name, float("nan")) for v in per_seed]
        parts.append(f"{name} {spread([float(x) for x in values])}")
    metrics = {"per_seed": {str(s): v.metrics for s, v in zip(seeds, per_seed)}}
    return combine_seeds(mean, per_seed, "; ".join(parts), metrics)
