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
from types import SimpleNamespace

import numpy as np

from factlab.analysis.fits import loglog_slope
from factlab.analysis.search import frontier
from factlab.report import plots
from factlab.report.style import paper_style, save_figure
from factlab.store.run_dir import read_split


def _by_seed(rows: list[dict], xs: list, x_key: str, y_key: str) -> np.ndarray:
    """[n_seeds, len(xs)] of `y_key` (NaN where a seed has no row at that x)."""
    seeds = sorted({r["seed"] for r in rows})
    table = {(r["seed"], r[x_key]): r[y_key] for r in rows}
    return np.array([[table.get((s, x), np.nan) for x in xs] for s in seeds], dtype=float)


def capacity_figures(run_dir: Path, kind: str, slope_range: tuple[float, float]) -> list[Path]:
    """Capacity vs parameters per MLP ratio: seed bands, the seed-mean fit, the paper's guide,
    the verdict's slope bounds through the first point and its stored slopes."""
    rows = read_split(run_dir, "capacity")
    if not rows:
        return []
    cfg = json.loads((run_dir / "config.json").read_text())
    stored = plots.stored_verdict(run_dir)
    lo, hi = stored.get("slope_range", default=slope_range)
    guide = 1.3 if kind == "linear" else 0.35  # d^2 = 1.3 N ln N; m d = 0.35 N ln N
    scale = 1.0 if kind == "linear" else 2.0  # the MLP guide is on m d, P = 2 m d
    n = np.geomspace(max(2, min(r["capacity"] for r in rows) / 2),
                     max(r["capacity"] for r in rows) * 2, 50)
    name = "$d^2$" if kind == "linear" else "$md$"
    guides = [(scale * guide * n * np.log(n), n, f"{name} = {guide:g} $N\\,\\ln N$")]
    ratios = sorted({r["ratio"] for r in rows})
    lines = []
    with paper_style():
        fig, ax = plots.subplots()
        for i, ratio in enumerate(ratios):
            sel = [r for r in rows if r["ratio"] == ratio]
            ds = sorted({r["d"] for r in sel})
            params = [next(r["params"] for r in sel if r["d"] == d) for d in ds]
            caps = _by_seed(sel, ds, "d", "capacity")
            label = "linear" if kind == "linear" else f"c={ratio:g}"  # the verdict's key
            slope = stored.get("slope", label)
            fit = loglog_slope(params, np.nanmean(caps, 0)) if len(ds) >= 2 else None
            plots.trend(ax, params, caps,
                        label="linear memory" if kind == "linear" else f"m = {ratio:g} d",
                        fit=fit, fit_label=None if slope is None else f"fit, slope {slope:.2f}",
                        guides=guides if i == len(ratios) - 1 else (), xlabel="parameters $P$",
                        ylabel=f"capacity $N$ (acc $\\geq$ {cfg.get('threshold', 0.99):g})",
                        title=f"{kind} associative memory")
            if i == 0:  # the bounds of the slope rule, anchored at the smallest memory
                plots.slope_bounds(ax, params, (params[0], float(np.nanmean(caps[:, 0]))),
                                   (lo, hi), f"slope bounds {lo:.2f}, {hi:.2f}")
            seeds = stored.seeds(label, container="slope_per_seed")
            lines.append(f"{label} slope {plots.seed_text(slope, seeds)}")
        lines[-1] += f", needs {lo:.2f}–{hi:.2f}"
        plots.annotate(ax, plots.note(stored, *lines), "lower right")
        ax.legend(loc="upper left")
        return [save_figure(fig, run_dir, "capacity")]


def sequential_figures(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Losses and accuracies over steps (seed bands): the verdict's plateau band, the
    relation-only and convergence bars, log(RD), the stored plateau shaded and annotated."""

    records = read_split(run_dir, "test")
    if not records:
        return []
    cfg = json.loads((run_dir / "config.json").read_text())
    stored = plots.stored_verdict(run_dir)
    D, R = cfg["task"]["n_answers"], cfg["task"]["n_relations"]
    log_d = stored.get("log_D", default=math.log(D))
    steps = sorted({r["step"] for r in records})
    lo, hi = rule.PLATEAU_BAND
    with paper_style():
        fig, (ax_l, ax_a) = plots.subplots(1, 2, figsize=(6.75, 2.6))
        keys = (("loss", "total"), ("loss_relation", "relation-only"),
                ("loss_subject", "subject-only"))
        ax_l.axhspan(lo * log_d, hi * log_d, color="0.85", lw=0, zorder=0,
                     label=f"plateau band {lo:g}–{hi:g} log {D}")
        plots.threshold_line(ax_l, rule.PLATEAU_REL_LOSS,
                             f"relation-only $\\leq$ {rule.PLATEAU_REL_LOSS}")
        plots.threshold_line(ax_l, rule.CONVERGED_LOSS_FRACTION * log_d,
                             f"converged $\\leq$ {rule.CONVERGED_LOSS_FRACTION:g} log {D}",
                             ls=":")
        ax_l.axhline(math.log(R * D), color="0.5", lw=0.6, ls="-.", label=f"chance log {R * D}")
        plots.curves(ax_l, steps, {lab: _by_seed(records, steps, "step", k) for k, lab in keys},
                     xlabel="step", ylabel="test loss (nats)", title="losses")
        plots.curves(ax_a, steps, {lab: _by_seed(records, steps, "step", k.replace("loss", "acc"))
                                   for k, lab in keys},
                     xlabel="step", ylabel="test accuracy", title="accuracies")
        ax_a.set_ylim(0, 1.02)
        start, end = stored.get("plateau_start"), stored.get("plateau_end")
        if start is not None:
            for ax in (ax_l, ax_a):
                ax.axvspan(start, end, color="tab:red", alpha=0.15, lw=0)
        total = cfg["train"]["steps"]
        need = rule.PLATEAU_MIN_FRACTION * total
        length = stored.get("plateau_steps")
        where = "no plateau" if start is None else f"plateau {start}–{end}"
        plots.annotate(ax_a, plots.note(
            stored, f"{where} ({'n/a' if length is None else length} steps), needs "
                    f"≥ {need:.0f} ({rule.PLATEAU_MIN_FRACTION:.0%} of {total})",
            f"final loss {stored.spread('final_loss', fmt='.3f')}, needs "
            f"≤ {rule.CONVERGED_LOSS_FRACTION * log_d:.2f}"), "lower right")
        handles, labels = ax_l.get_legend_handles_labels()  # the curves are named on the right
        ax_l.legend(handles[:4], labels[:4], fontsize=5, loc="upper right")
        return [save_figure(fig, run_dir, "sequential")]


def tradeoff_figures(run_dir: Path, threshold: float, rule: SimpleNamespace) -> list[Path]:
    """Seed-mean accuracy over (attention params, MLP params): cells reaching the verdict's
    threshold outlined (and marked on the colour bar), the frontier, its stored Spearman."""

    rows = read_split(run_dir, "grid")
    if not rows:
        return []
    cfg = json.loads((run_dir / "config.json").read_text())
    stored = plots.stored_verdict(run_dir)
    heads = sorted({r["heads"] for r in rows})
    widths = sorted({r["width"] for r in rows})
    acc = {(h, m): float(np.mean([r["acc"] for r in rows if (r["heads"], r["width"]) == (h, m)]))
           for h in heads for m in widths}
    grid = np.array([[acc[h, m] for h in heads] for m in widths])
    front = frontier(acc, threshold)
    d, dh = cfg["model"]["d_model"], cfg["model"]["d_head"]
    n_seeds = len({r["seed"] for r in rows})
    decide = plots.note(
        stored, f"Spearman {stored.spread('spearman', over='spearman_per_seed')}, needs "
                f"≤ {rule.MAX_SPEARMAN}",
        f"MLP span {stored.spread('mlp_span', fmt='.1f', over='span_per_seed')}×, needs "
        f"≥ {rule.MIN_SPAN:g}×, ≥ {rule.MIN_FRONTIER} points", width=60)
    with paper_style():
        fig, ax = plots.subplots(figsize=(3.6, 3.0))
        plots.heatmap(ax, grid, [d * dh * h for h in heads], [d * m for m in widths],
                      colorbar=f"test accuracy (mean of {n_seeds} seeds)", threshold=threshold,
                      path=[(heads.index(h), widths.index(m)) for h, m in front.items()],
                      path_label=f"frontier (acc $\\geq$ {threshold})", decide=decide,
                      decide_loc="below",
                      xlabel="attention parameters $d\\,d_h H$", ylabel="MLP parameters $d\\,m$",
                      title=f"{cfg['task']['n_subjects'] * cfg['task']['n_relations']} facts")
        return [save_figure(fig, run_dir, "tradeoff")]
