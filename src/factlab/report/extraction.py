"""Figures of the extraction family, drawn from a run's metrics.jsonl alone (one style).

Each function takes a run directory and returns the PNG paths it wrote; the experiments of
`factlab.experiments.extraction*` name them as their `figures`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from factlab.analysis.extraction_stats import log_error_fit
from factlab.report.plots import bars, curves, subplots, threshold_line
from factlab.report.style import paper_style, save_figure
from factlab.store.run_dir import read_split

Rows = list[dict[str, Any]]


def by_seed(rows: Rows, key: str, values: Sequence[Any], metric: str) -> np.ndarray:
    """[n_seeds, len(values)] of `metric` for the cell `key == value` (NaN where missing)."""
    seeds = sorted({r["seed"] for r in rows})
    out = np.full((len(seeds), len(values)), np.nan)
    for r in rows:
        if r.get(key) in values and r.get(metric) is not None:
            out[seeds.index(r["seed"]), list(values).index(r[key])] = r[metric]
    return out


def collapse_panel(ax: Any, rows: Rows, group: str | None = None) -> dict[str, float]:
    """log held-out error against x = Ñ_f K² log|R| / (2|R|²), pooled, with its fit."""
    x = np.array([r["bound_x"] for r in rows], float)
    acc = np.array([r["test_acc"] for r in rows], float)
    groups = list(dict.fromkeys(str(r.get(group, "")) for r in rows)) if group else [""]
    for i, g in enumerate(groups):
        sel = np.array([str(r.get(group, "")) == g for r in rows]) if group else np.ones(len(x), bool)
        ax.scatter(x[sel], np.clip(1 - acc[sel], 1e-3, 1), s=8, color=f"C{i}", label=g or None)
    fit = log_error_fit(x, acc)
    if np.isfinite(fit["b"]):
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, np.exp(fit["a"] - fit["b"] * xs), "k--", lw=1,
                label=f"fit b={fit['b']:.3g}, R²={fit['r2']:.2f}")
    ax.set(yscale="log", ylim=(1e-2, 1.05), xlabel=r"x = $\tilde N_f K^2 \log|R| / (2|R|^2)$",
           ylabel="held-out error (each seed)")
    ax.legend(fontsize=5)
    return fit


def make_trend_figure(key: str, xlabel: str, log_x: bool = False,
                      ) -> Callable[[Path], list[Path]]:
    """Held-out accuracy (overall and covered-and-seen) vs the knob, and the collapse panel."""

    def figures(run_dir: Path) -> list[Path]:
        rows = [r for r in read_split(run_dir, "cell") if r.get("mode", "random") == "random"]
        if not rows:
            return []
        values = sorted({r[key] for r in rows})
        with paper_style():
            fig, (ax, bx) = subplots(1, 2, figsize=(6.75, 2.6))
            series = {"held-out": by_seed(rows, key, values, "test_acc"),
                      "held-out, covered & seen": by_seed(rows, key, values, "test_acc_cov_seen"),
                      "retained": by_seed(rows, key, values, "retained_acc"),
                      "stored": by_seed(rows, key, values, "stored_acc")}
            curves(ax, values, series, logx=log_x, xlabel=xlabel, ylabel="accuracy")
            threshold_line(ax, rows[0]["chance_block"], "chance 1/D", color="gray")
            ax.set_ylim(0, 1.02)
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.minorticks_off()
            ax.legend(fontsize=5)
            collapse_panel(bx, rows)
            fig.subplots_adjust(wspace=0.35)
            return [save_figure(fig, run_dir, "trend")]

    return figures


def figures_coverage(run_dir: Path) -> list[Path]:
    """Trend (random C), whole-relation C by covered/uncovered relation, hallucination vs c."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    paths = make_trend_figure("coverage", "coverage c")(run_dir)
    rel = [r for r in rows if r.get("mode") == "relations"]
    rnd = [r for r in rows if r.get("mode") == "random"]
    with paper_style():
        fig, (ax, bx) = subplots(1, 2, figsize=(6.75, 2.6))
        if rel:
            cs = sorted({r["coverage"] for r in rel})
            curves(ax, cs, {"uncovered relations": by_seed(rel, "coverage", cs,
                                                            "test_acc_rel_uncovered"),
                            "covered relations": by_seed(rel, "coverage", cs,
                                                         "test_acc_rel_covered"),
                            "retained": by_seed(rel, "coverage", cs, "retained_acc")},
                   xlabel="coverage c (whole relations)", ylabel="accuracy")
            threshold_line(ax, rel[0]["chance_block"], "chance 1/D", color="gray")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=5)
        cs = sorted({r["coverage"] for r in rnd})
        curves(bx, cs, {"hallucination (random C)": by_seed(rnd, "coverage", cs,
                                                            "test_hallucination"),
                        "error (random C)": 1 - by_seed(rnd, "coverage", cs, "test_acc")},
               xlabel="coverage c", ylabel="rate")
        bx.set_ylim(0, 1.02)
        bx.legend(fontsize=5)
        fig.subplots_adjust(wspace=0.35)
        paths.append(save_figure(fig, run_dir, "coverage"))
    return paths


def figures_size(run_dir: Path) -> list[Path]:
    """Held-out accuracy vs Ñ_f per (K, tau) setup, and the collapse of every cell on x."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    with paper_style():
        fig, (ax, bx) = subplots(1, 2, figsize=(6.75, 2.6))
        for i, setup in enumerate(dict.fromkeys(r["setup"] for r in rows)):
            sel = [r for r in rows if r["setup"] == setup]
            ns = sorted({r["n_finetune"] for r in sel})
            curves(ax, ns, {setup: by_seed(sel, "n_finetune", ns, "test_acc")}, logx=True,
                   color=f"C{i}")
        ax.set(xlabel=r"fine-tuning sequences $N_f$", ylabel="held-out Q&A acc", ylim=(0, 1.02))
        ax.legend(fontsize=5)
        collapse_panel(bx, rows, group="setup")
        fig.subplots_adjust(wspace=0.35)
        return [save_figure(fig, run_dir, "collapse")]


def figures_extraction(run_dir: Path) -> list[Path]:
    """Pre-training curves, fine-tuning validation curves (first seed), held-out cells."""
    pre, ft, final = (read_split(run_dir, s) for s in ("pretrain", "finetune", "final"))
    if not final:
        return []
    seed0 = min(r["seed"] for r in final)
    with paper_style():
        fig, (ax, bx, cx) = subplots(1, 3, figsize=(6.75, 2.3))
        sel = [r for r in pre if r.get("seed") == seed0]
        for key, label in [("acc", "stored acc"), ("mass_subject", "attn on s"),
                           ("mass_template", "attn on T")]:
            ax.plot([r["step"] for r in sel], [r[key] for r in sel], label=label)
        ax.set(xlabel="pre-training step", title=f"acquisition (seed {seed0})")
        ax.legend(fontsize=5)
        sel = [r for r in ft if r.get("seed") == seed0]
        for lr in dict.fromkeys(r["lr"] for r in sel):
            pts = [r for r in sel if r["lr"] == lr]
            bx.plot([r["step"] for r in pts], [r["val_acc"] for r in pts], label=f"lr {lr:g}")
        bx.set(xlabel="fine-tuning step", ylabel="P_val Q&A acc", ylim=(0, 1.02))
        bx.legend(fontsize=5)
        cells = ["cov_seen", "cov_unseen", "unc_seen", "unc_unseen"]
        vals = np.array([[r.get(f"test_acc_{c}") if r.get(f"test_acc_{c}") is not None
                          else np.nan for c in cells] for r in final], float)
        bars(cx, ["C,J", "C,¬J", "¬C,J", "¬C,¬J"], vals, title="held-out cells")
        threshold_line(cx, final[0]["chance_block"], color="gray")
        return [save_figure(fig, run_dir, "extraction")]


def figures_acquisition(run_dir: Path) -> list[Path]:
    """Attention mass on s+T against uniform, relation gap against its permutation null."""
    final = read_split(run_dir, "final")
    if not final:
        return []
    with paper_style():
        fig, (ax, bx) = subplots(1, 2, figsize=(6.75, 2.4))
        mass = np.array([[r["mass_subject"] + r["mass_template"], r["uniform_mass"]]
                         for r in final])
        bars(ax, ["s + T", "uniform"], mass, threshold=0.5, ylabel="attention mass at ANS")
        gap = np.array([[r["rel_cos_within"] - r["rel_cos_across"], r["rel_gap_null"]]
                        for r in final])
        bars(bx, ["within - across", "null q95"], gap, ylabel="cosine gap")
        fig.subplots_adjust(wspace=0.35)
        return [save_figure(fig, run_dir, "acquisition")]


def figures_lora(run_dir: Path) -> list[Path]:
    """Held-out and retained accuracy per (target, rank) beside full FT; update spectra."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    names = list(dict.fromkeys(r["variant"] for r in rows))
    with paper_style():
        fig, (ax, bx) = subplots(1, 2, figsize=(6.75, 2.6))
        seeds = sorted({r["seed"] for r in rows})
        for k, metric in enumerate(("test_acc", "retained_acc")):
            vals = by_seed(rows, "variant", names, metric)
            pos = np.arange(len(names)) + 0.4 * k
            ax.bar(pos, np.nanmean(vals, 0), 0.4, label=metric.replace("_acc", ""))
        ax.set_xticks(np.arange(len(names)) + 0.2, names, fontsize=4, rotation=60)
        ax.set(ylabel="accuracy", ylim=(0, 1.02), title=f"{len(seeds)} seeds")
        ax.legend(fontsize=5)
        full = [r for r in rows if r["variant"] == "full" and r.get("dW_QK_sv")]
        for key, ls in [("dW_QK_sv", "-"), ("dW_in_sv", "--")]:
            for j, r in enumerate(full[:3]):
                sv = np.array(r.get(key) or [np.nan], float)
                bx.plot(np.arange(1, len(sv) + 1), sv / sv[0], ls=ls, color=f"C{j}", marker=".",
                        label=f"{key[:-3]} seed {r['seed']}")
        bx.set(yscale="log", xlabel="index i", ylabel=r"$\sigma_i / \sigma_1$",
               title="full fine-tuning update")
        bx.legend(fontsize=5)
        fig.subplots_adjust(wspace=0.35)
        return [save_figure(fig, run_dir, "lora")]


def figures_schedule(run_dir: Path) -> list[Path]:
    """Held-out accuracy per schedule at its tuned lr, for each phase."""
    rows = read_split(run_dir, "selected")
    if not rows:
        return []
    with paper_style():
        fig, axes = subplots(1, 2, figsize=(6.75, 2.4))
        for ax, phase in zip(axes, ("pretrain", "finetune")):
            sel = [r for r in rows if r["phase"] == phase]
            names = list(dict.fromkeys(r["schedule"] for r in sel))
            bars(ax, names, by_seed(sel, "schedule", names, "test_acc"),
                 ylabel="held-out Q&A acc", title=f"schedule on {phase} (tuned lr)")
            ax.set_ylim(0, 1.02)
        fig.subplots_adjust(wspace=0.35)
        return [save_figure(fig, run_dir, "schedule")]


def figures_attention_only(run_dir: Path) -> list[Path]:
    """Stored accuracy per model variant (seed min-max error bars, STORED_MIN line)."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    names = list(dict.fromkeys(r["variant"] for r in rows))
    with paper_style():
        fig, ax = subplots()
        bars(ax, names, by_seed(rows, "variant", names, "stored_acc"), threshold=0.99,
             threshold_label="stored 0.99", ylabel="stored accuracy")
        ax.set_ylim(0, 1.05)
        return [save_figure(fig, run_dir, "attention_only")]
