"""The trend figure of a sweep: each metric against the first swept key, seed bands.

Drawn from the sweep's tables alone (results.csv, metrics.csv, sweep.json), so
`draw_trend(DIR)` redraws it without rerunning anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from factlab.report.style import band, paper_style, pretty_label, save_figure
from factlab.store.table import LONG, MANIFEST, TABLE, cell_text, read_json, read_table


def _scalar(value: Any) -> Any:
    """Unwrap one-element lists."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _join_families(rows: list[dict[str, Any]], long: list[dict[str, Any]], x: str) -> None:
    """Add `metrics.P` = the metrics.csv value of P whose key is the row's x value.

    Experiments that loop over x internally key their metrics by its value (capacity's
    capacity.linear.<d>); a sweep that varies x gives each cell one such value, and this joins
    them into one trend.
    """
    by_run: dict[str, list[dict[str, Any]]] = {}
    for rec in long:
        by_run.setdefault(str(rec["run_id"]), []).append(rec)
    for row in rows:
        xv = cell_text(_scalar(row.get(x)))
        for rec in by_run.get(str(row["run_id"]), []):
            if rec["key"] is not None and cell_text(rec["key"]) == xv and rec["metric"]:
                row.setdefault(f"metrics.{rec['metric']}", rec["value"])


def _default_metrics(rows: list[dict[str, Any]]) -> list[str]:
    candidates = sorted({k for r in rows for k in r if k.startswith("metrics.")})
    picked = [k for k in candidates if all(_is_number(_scalar(r.get(k))) for r in rows)
              and len({_scalar(r.get(k)) for r in rows}) > 1][:4]
    return picked or ["holds"]


def draw_trend(sweep_dir: str | Path, x: str | None = None,
               metrics: Sequence[str] | None = None) -> Path | None:
    """Metric vs the first swept key, one line per other-axes combination, seed bands.

    Mean over seeds with a min-max band; `metrics` defaults to every numeric `metrics.*`
    column present in all finished cells (at most four).
    """
    sweep_dir = Path(sweep_dir)
    rows = [r for r in read_table(sweep_dir / TABLE) if r["status"] == "done"]
    if not rows:
        return None
    manifest = read_json(sweep_dir / MANIFEST) or {}
    axes = [k for k in manifest.get("axes", {}) if k not in ("seed", "seeds")]
    x = x or (axes[0] if axes else "seeds")
    others = [k for k in axes if k != x]
    long = read_table(sweep_dir / LONG) if (sweep_dir / LONG).exists() else []
    _join_families(rows, long, x)
    metrics = list(metrics) if metrics else _default_metrics(rows)
    xs_raw = sorted({json.dumps(_scalar(r.get(x))) for r in rows})
    xs_val = [json.loads(v) for v in xs_raw]
    numeric = all(_is_number(v) for v in xs_val)
    if numeric:
        order = sorted(range(len(xs_val)), key=lambda i: xs_val[i])
        xs_raw = [xs_raw[i] for i in order]
        positions = [float(xs_val[i]) for i in order]
    else:
        positions = list(range(len(xs_raw)))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        label = ", ".join(f"{pretty_label(k)} = {cell_text(_scalar(r.get(k)))}"
                          for k in others) or "mean"
        groups.setdefault(label, []).append(r)
    seeds_all = sorted({json.dumps(r.get("seeds")) for r in rows})
    with paper_style():
        import matplotlib.pyplot as plt

        fig, axs = plt.subplots(len(metrics), 1, squeeze=False,
                                figsize=(3.25, 1.6 + 1.1 * len(metrics)), sharex=True)
        for ax, metric in zip(axs[:, 0], metrics):
            for label, sel in groups.items():
                ys = np.full((len(seeds_all), len(xs_raw)), np.nan)
                for r in sel:
                    value = _scalar(r.get(metric))
                    value = float(value) if isinstance(value, bool) else value
                    if _is_number(value):
                        ys[seeds_all.index(json.dumps(r.get("seeds"))),
                           xs_raw.index(json.dumps(_scalar(r.get(x))))] = value
                keep = ~np.all(np.isnan(ys), axis=0)
                if keep.any():
                    band(ax, np.asarray(positions)[keep], ys[:, keep], label)
            ax.set_ylabel(pretty_label(metric))
        last = axs[-1, 0]
        last.set_xlabel(pretty_label(x))
        if numeric and min(positions) > 0 and max(positions) / min(positions) >= 10:
            last.set_xscale("log")
        if not numeric:
            last.set_xticks(positions, [json.loads(v) if v.startswith('"') else v
                                        for v in xs_raw])
        if len(groups) > 1:
            axs[0, 0].legend()
        n = len(seeds_all)
        axs[0, 0].set_title(f"{manifest.get('experiment', '')} sweep "
                            f"(mean, min-max over {n} seed{'s' * (n > 1)})")
        return save_figure(fig, sweep_dir, "trend")
