"""Shared plot functions: curves with seed bands, a heat-map, a trend with its fit, bars.

Every function draws on a given `Axes` (make them with `subplots` inside
`report.style.paper_style()`, save with `report.style.save_figure`) and can draw the verdict's
threshold (`threshold=`) and write the number the verdict rests on in a corner box
(`decide=`), so a figure shows what was judged and against what. The deciding number comes
from the run's stored verdict (`stored_verdict` reads summary.json; `note` formats it as
"<verdict>: slope 0.74 [0.73, 0.75], needs 0.70–1.10", with an inconclusive verdict's reason),
never from a recomputation. Seed data are arrays with one
row per seed; a 1-D array is one seed. NaN entries (a seed that did not reach a point) are
skipped by the mean and the band.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from factlab.report.style import THRESHOLD_GID, annotate, band
from factlab.report.style import threshold as threshold_line

__all__ = ["annotate", "threshold_line", "Stored", "stored_verdict", "seed_text", "note",
           "slope_bounds", "curves", "heatmap", "trend", "bars", "subplots", "seed_rows"]


def subplots(nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[plt.Figure, Any]:
    """`plt.subplots` (so family modules need not import pyplot); call inside paper_style."""
    return plt.subplots(nrows, ncols, **kw)


def seed_rows(values: Any) -> np.ndarray:
    """`values` as a float array [n_seeds, n_points] (a 1-D input is one seed)."""
    arr = np.asarray(values, dtype=float)
    return arr[None, :] if arr.ndim == 1 else arr


@dataclasses.dataclass
class Stored:
    """The verdict a run stored in summary.json; empty (state "") before the run wrote it."""

    state: str = ""
    reason: str = ""
    evidence: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def get(self, *path: str | int, default: Any = None) -> Any:
        """metrics[path[0]][path[1]]..., or `default` where the path is missing."""
        node: Any = self.metrics
        for key in path:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                return default
        return node

    def seeds(self, *path: str | int, container: str = "per_seed") -> list[float]:
        """The value at `path` in every seed's entry of metrics[container] (dict or list)."""
        per = self.metrics.get(container) or []
        entries = per.values() if isinstance(per, dict) else per
        out = []
        for entry in entries:
            value = Stored(metrics=entry).get(*path) if isinstance(entry, dict) else None
            out.append(float(value) if isinstance(value, (int, float)) else np.nan)
        return out


    def spread(self, *path: str | int, fmt: str = ".2f", over: str | None = None) -> str:
        """`seed_text` of the value at `path` with its seeds: those of metrics["per_seed"],
        or the list metrics[`over`] where the verdict stores them flat."""
        seeds = self.get(over, default=[]) if over else self.seeds(*path)
        return seed_text(self.get(*path), seeds, fmt)


def stored_verdict(run_dir: str | Path) -> Stored:
    """The verdict fields of `run_dir`/summary.json (an empty `Stored` if it is absent)."""
    path = Path(run_dir) / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return Stored()
    return Stored(data.get("verdict", ""), data.get("reason", ""), data.get("evidence", ""),
                  data.get("metrics") or {})


def seed_text(value: Any, seeds: Sequence[float] = (), fmt: str = ".2f") -> str:
    """'0.74 [0.73, 0.75]': the verdict's number and its [min, max] over seeds (with >= 2)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    finite = [v for v in seeds if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return f"{value:{fmt}}"
    return f"{value:{fmt}} [{min(finite):{fmt}}, {max(finite):{fmt}}]"


def note(stored: Stored, *lines: str, width: int = 46) -> str:
    """The deciding-number text: '<verdict>: <first line>', the rest, and an inconclusive
    verdict's reason, each wrapped at `width` characters."""
    body = [line.replace(">=", "≥").replace("<=", "≤") for line in lines if line]
    if stored.state == "inconclusive" and stored.reason:
        reason = stored.reason.replace(">=", "≥").replace("<=", "≤")  # the sign, not ASCII
        body.append(textwrap.shorten(reason, 2 * width, placeholder=" ..."))
    head = stored.state or "no verdict stored yet"
    text = [f"{head}: {body[0]}" if body else head, *body[1:]]
    return "\n".join(textwrap.fill(t, width, subsequent_indent="  ") for t in text)


def slope_bounds(ax: plt.Axes, x: Sequence[float], anchor: tuple[float, float],
                 slopes: Sequence[float], label: str | None = None) -> None:
    """Log-log lines y = y0 (x / x0)^s through `anchor` = (x0, y0), one per bound s of a
    verdict's slope rule, across the range of `x` (tagged as thresholds)."""
    xs = np.array([min(x), max(x)], dtype=float)
    x0, y0 = anchor
    for i, s in enumerate(slopes):
        ax.plot(xs, y0 * (xs / x0) ** s, color="0.2", ls="--", lw=0.9, zorder=1.5,
                gid=THRESHOLD_GID, label=label if i == 0 else None)


def _finish(ax: plt.Axes, threshold: float | None, threshold_label: str | None,
            decide: str | None, decide_loc: str, logx: bool, logy: bool,
            labels: Mapping[str, str]) -> None:
    if threshold is not None:
        threshold_line(ax, threshold, threshold_label)
    if decide:
        annotate(ax, decide, decide_loc)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set(**{k: v for k, v in labels.items() if v})
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def curves(ax: plt.Axes, x: Sequence[float], series: Mapping[str, Any], *,
           threshold: float | None = None, threshold_label: str | None = None,
           decide: str | None = None, decide_loc: str = "upper left", logx: bool = False,
           logy: bool = False, xlabel: str = "", ylabel: str = "", title: str = "",
           **line_kw: Any) -> None:
    """One line per series (the seed mean) with its [min, max] band over seeds.

    `series` maps a legend label to values [n_seeds, len(x)]; `threshold` draws the verdict's
    line, `decide` writes the deciding number in the `decide_loc` corner.
    """
    for label, values in series.items():
        band(ax, x, seed_rows(values), label, **line_kw)
    _finish(ax, threshold, threshold_label, decide, decide_loc, logx, logy,
            {"xlabel": xlabel, "ylabel": ylabel, "title": title})


def heatmap(ax: plt.Axes, values: Any, x_ticks: Sequence[Any], y_ticks: Sequence[Any], *,
            vmin: float = 0.0, vmax: float = 1.0, cmap: str = "viridis",
            colorbar: str | None = None, threshold: float | None = None,
            path: Sequence[tuple[int, int]] = (), path_label: str | None = None,
            decide: str | None = None, decide_loc: str = "upper right", xlabel: str = "",
            ylabel: str = "", title: str = "") -> None:
    """`values` [len(y_ticks), len(x_ticks)] as an image (row 0 at the bottom).

    `threshold` outlines the cells at or above it (what counts as success); `path` is a list of
    (column, row) cells joined by a dashed line (e.g. a success frontier).
    """
    grid = np.asarray(values, dtype=float)
    im = ax.imshow(grid, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    if threshold is not None:
        rows, cols = np.nonzero(np.nan_to_num(grid, nan=-np.inf) >= threshold)
        for r, c in zip(rows, cols):
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, ec="w", lw=0.6))
    if path:
        px, py = zip(*path)
        ax.plot(px, py, "w--o", ms=3, lw=1, label=path_label)
    ax.set_xticks(range(len(x_ticks)), [str(v) for v in x_ticks])
    ax.set_yticks(range(len(y_ticks)), [str(v) for v in y_ticks])
    ax.grid(False)
    if colorbar is not None:
        bar = ax.figure.colorbar(im, ax=ax, label=colorbar)
        if threshold is not None:  # the value the outlined cells reach, on the colour scale
            threshold_line(bar.ax, threshold, color="k", lw=1.2)
    _finish(ax, None, None, decide, decide_loc, False, False,
            {"xlabel": xlabel, "ylabel": ylabel, "title": title})


def trend(ax: plt.Axes, x: Sequence[float], values: Any, *, label: str = "measured",
          fit: tuple[float, float] | None = None, fit_label: str | None = None,
          guides: Sequence[tuple[Sequence[float], Sequence[float], str]] = (),
          threshold: float | None = None, threshold_label: str | None = None,
          decide: str | None = None, decide_loc: str = "upper left", logx: bool = True,
          logy: bool = True, xlabel: str = "", ylabel: str = "", title: str = "") -> None:
    """Measured points with seed bands, the fitted line and reference guides.

    `fit` = (slope, intercept) of y on x in the axes' space (log-log when both are log:
    log y = slope log x + intercept, as `analysis.fits.loglog_slope` returns); `guides` are
    (x, y, label) reference curves drawn dotted (e.g. a paper's hand-placed law).
    """
    band(ax, x, seed_rows(values), label)
    if fit is not None:
        xs = np.asarray(x, dtype=float)
        tx = np.log(xs) if logx else xs
        ty = fit[0] * tx + fit[1]
        ax.plot(xs, np.exp(ty) if logy else ty, "k-", lw=0.8,
                label=fit_label or f"fit, slope {fit[0]:.2f}")
    for gx, gy, glabel in guides:
        ax.plot(gx, gy, "k:", lw=1, label=glabel)
    _finish(ax, threshold, threshold_label, decide, decide_loc, logx, logy,
            {"xlabel": xlabel, "ylabel": ylabel, "title": title})


def bars(ax: plt.Axes, labels: Sequence[str], values: Any, *, threshold: float | None = None,
         threshold_label: str | None = None, decide: str | None = None,
         decide_loc: str = "upper left", ylabel: str = "", title: str = "",
         color: str | None = None) -> None:
    """Bars at the seed mean with [min, max] error bars and each seed as a dot.

    `values` is [n_seeds, len(labels)] (or 1-D for one seed).
    """
    rows = seed_rows(values)
    mean = np.nanmean(rows, axis=0)
    err = np.abs(np.stack([mean - np.nanmin(rows, axis=0), np.nanmax(rows, axis=0) - mean]))
    pos = np.arange(len(labels))
    ax.bar(pos, mean, yerr=err if rows.shape[0] > 1 else None, color=color, capsize=2,
           alpha=0.8)
    if rows.shape[0] > 1:
        for row in rows:
            ax.plot(pos, row, "k.", ms=3)
    ax.set_xticks(pos, list(labels))
    _finish(ax, threshold, threshold_label, decide, decide_loc, False, False,
            {"ylabel": ylabel, "title": title})
