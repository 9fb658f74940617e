"""Figures of the factual-recall family (arXiv 2412.06538), redrawn from a run's files alone.

capacity-linear / capacity-mlp: capacity vs parameters (log-log, seed bands, fitted slope, the
paper's guide). recall-sequential: test losses and accuracies over steps (seed bands, log(RD)
and log D lines, the plateau shaded). recall-tradeoff: seed-mean accuracy heat-map over
(attention, MLP) parameters with the success frontier.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from factlab.analysis.fits import loglog_slope
from factlab.analysis.search import frontier
from factlab.analysis.stats import spearman
from factlab.report import plots
from factlab.report.style import paper_style, save_figure
from factlab.store.run_dir import read_split


def _by_seed(rows: list[dict], xs: list, x_key: str, y_key: str) -> np.ndarray:
    """[n_seeds, len(xs)] of `y_key` (NaN where a seed has no row at that x)."""
    seeds = sorted({r["seed"] for r in rows})
    table = {(r["seed"], r[x_key]): r[y_key] for r in rows}
    return np.array([[table.get((s, x), np.nan) for x in xs] for s in seeds], dtype=float)


def capacity_figures(run_dir: Path, kind: str, slope_range: tuple[float, float]) -> list[Path]:
    """Capacity vs parameters per MLP ratio, with the seed-mean fit and the paper's guide."""
    rows = read_split(run_dir, "capacity")
    if not rows:
        return []
    guide = 1.3 if kind == "linear" else 0.35  # d^2 = 1.3 N ln N; m d = 0.35 N ln N
    scale = 1.0 if kind == "linear" else 2.0  # the MLP guide is on m d, P = 2 m d
    n = np.geomspace(max(2, min(r["capacity"] for r in rows) / 2),
                     max(r["capacity"] for r in rows) * 2, 50)
    name = "d^2" if kind == "linear" else "md"
    guides = [(scale * guide * n * np.log(n), n, f"{name} = {guide:g} N ln N")]
    ratios = sorted({r["ratio"] for r in rows})
    fits = {}
    for ratio in ratios:
        sel = [r for r in rows if r["ratio"] == ratio]
        ds = sorted({r["d"] for r in sel})
        if len(ds) >= 2:
            fits[ratio] = loglog_slope([next(r["params"] for r in sel if r["d"] == d) for d in ds],
                                       np.nanmean(_by_seed(sel, ds, "d", "capacity"), 0))
    lo, hi = slope_range
    decide = (f"slope {', '.join(f'{f[0]:.2f}' for f in fits.values()) or 'n/a'}\n"
              f"(holds in {lo:.2f}..{hi:.2f})")
    with paper_style():
        fig, ax = plots.subplots()
        for i, ratio in enumerate(ratios):
            sel = [r for r in rows if r["ratio"] == ratio]
            ds = sorted({r["d"] for r in sel})
            params = [next(r["params"] for r in sel if r["d"] == d) for d in ds]
            last = i == len(ratios) - 1
            plots.trend(ax, params, _by_seed(sel, ds, "d", "capacity"),
                        label="linear memory" if kind == "linear" else f"m = {ratio:g} d",
                        fit=fits.get(ratio), guides=guides if last else (),
                        decide=decide if last else None, xlabel="parameters P",
                        ylabel="capacity N (acc >= 0.99)", title=f"{kind} associative memory")
        return [save_figure(fig, run_dir, "capacity")]


def sequential_figures(run_dir: Path) -> list[Path]:
    """Losses and accuracies over steps (seed bands) with log(RD), log D and the plateau."""
    records = read_split(run_dir, "test")
    if not records:
        return []
    cfg = json.loads((run_dir / "config.json").read_text())
    D, R = cfg["task"]["n_answers"], cfg["task"]["n_relations"]
    steps = sorted({r["step"] for r in records})
    plateau = [p for p in read_split(run_dir, "plateau") if p.get("seed") is None]
    with paper_style():
        fig, (ax_l, ax_a) = plots.subplots(1, 2, figsize=(6.75, 2.4))
        keys = (("loss", "total"), ("loss_relation", "relation-only"),
                ("loss_subject", "subject-only"))
        plots.curves(ax_l, steps, {lab: _by_seed(records, steps, "step", k) for k, lab in keys},
                     xlabel="step", ylabel="test loss (nats)", title="losses")
        plots.threshold_line(ax_l, math.log(R * D), f"log {R * D}")
        plots.threshold_line(ax_l, math.log(D), f"log {D}", color="gray")
        plots.curves(ax_a, steps, {lab: _by_seed(records, steps, "step", k.replace("loss", "acc"))
                                   for k, lab in keys},
                     xlabel="step", ylabel="test accuracy", title="accuracies")
        ax_a.set_ylim(0, 1.02)
        if plateau and plateau[0]["start"] is not None:
            for ax in (ax_l, ax_a):
                ax.axvspan(plateau[0]["start"], plateau[0]["end"], color="tab:red", alpha=0.15,
                           lw=0)
            plots.annotate(ax_l, f"seed-mean plateau\n{plateau[0]['start']}-{plateau[0]['end']}",
                           "lower left")
        return [save_figure(fig, run_dir, "sequential")]


def tradeoff_figures(run_dir: Path, threshold: float) -> list[Path]:
    """Seed-mean accuracy over (attention params, MLP params) with the frontier marked."""
    rows = read_split(run_dir, "grid")
    if not rows:
        return []
    cfg = json.loads((run_dir / "config.json").read_text())
    heads = sorted({r["heads"] for r in rows})
    widths = sorted({r["width"] for r in rows})
    acc = {(h, m): float(np.mean([r["acc"] for r in rows if (r["heads"], r["width"]) == (h, m)]))
           for h in heads for m in widths}
    grid = np.array([[acc[h, m] for h in heads] for m in widths])
    front = frontier(acc, threshold)
    d, dh = cfg["model"]["d_model"], cfg["model"]["d_head"]
    n_seeds = len({r["seed"] for r in rows})
    rho = spearman(np.array([d * dh * h for h in front], float),
                   np.array([d * m for m in front.values()], float)) if len(front) >= 2 else None
    decide = None if rho is None or np.isnan(rho) else f"frontier Spearman {rho:.2f}"
    with paper_style():
        fig, ax = plots.subplots(figsize=(3.6, 3.0))
        plots.heatmap(ax, grid, [d * dh * h for h in heads], [d * m for m in widths],
                      colorbar=f"test accuracy (mean of {n_seeds} seeds)", threshold=threshold,
                      path=[(heads.index(h), widths.index(m)) for h, m in front.items()],
                      path_label=f"frontier (acc >= {threshold})", decide=decide,
                      xlabel="attention parameters d d_h H", ylabel="MLP parameters d m",
                      title=f"{cfg['task']['n_subjects'] * cfg['task']['n_relations']} facts")
        return [save_figure(fig, run_dir, "tradeoff")]
