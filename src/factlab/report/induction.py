"""Figures of the induction / hijack family, redrawn from a run's metrics.jsonl alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from factlab.report.style import band, paper_style, save_figure
from factlab.store.run_dir import read_split


def _by_seed(rows: list[dict[str, Any]], key: str) -> tuple[list[float], np.ndarray]:
    """Steps of the first seed and a [seeds, steps] array of `key` (seeds cut to one length)."""
    seeds = list(dict.fromkeys(r.get("seed", 0) for r in rows))
    curves = [[r for r in rows if r.get("seed", 0) == s] for s in seeds]
    n = min(len(c) for c in curves)
    steps = [r["step"] for r in curves[0][:n]]
    return steps, np.array([[r.get(key, np.nan) for r in c[:n]] for c in curves], dtype=float)


def figures_induction_head(run_dir: Path) -> list[Path]:
    """Validation losses and the three memory probes over iterations, seed bands."""
    rows = read_split(run_dir, "val")
    if not rows:
        return []
    with paper_style():
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6.5, 2.4))
        for key, label in (("loss_bigram", "bigram (outs=0)"), ("loss_head", "in-context")):
            band(ax1, *_by_seed(rows, key), label=label)
        ax1.set(xlabel="iteration", ylabel="validation loss (nats)")
        ax1.legend()
        for key in ("wo1_acc", "wk1_acc", "wk0_acc", "acc_end"):
            band(ax2, *_by_seed(rows, key), label=key)
        ax2.axhline(0.5, color="k", ls="--", lw=0.8)
        ax2.set(xlabel="iteration", ylabel="probe")
        ax2.legend()
        return [save_figure(fig, run_dir, "probes")]


def figures_induction_depth(run_dir: Path) -> list[Path]:
    """Test acc_end of one and two layers beside the best order-free null, per seed."""
    rows = read_split(run_dir, "test")
    if not rows:
        return []
    with paper_style():
        fig, ax = plt.subplots(figsize=(3.6, 2.4))
        keys = ("acc1", "acc2", "null_over_represented", "null_count_match",
                "null_shuffled_prefix")
        labels = ("1 layer", "2 layers", "over-rep.", "count-match", "shuffled")
        vals = np.array([[r.get(k, np.nan) for k in keys] for r in rows])
        ax.bar(range(len(keys)), np.nanmean(vals, 0), color=["C0", "C1", "0.6", "0.6", "0.6"])
        for row in vals:
            ax.plot(range(len(keys)), row, "k.", ms=3)
        ax.set_xticks(range(len(keys)), labels, rotation=30)
        ax.set(ylabel="test acc_end (outs>=2)")
        return [save_figure(fig, run_dir, "depth")]


def figures_hijack_length(run_dir: Path) -> list[Path]:
    """Previous-token accuracy inside / past T_train and acc_end vs length, per scheme."""
    rows = read_split(run_dir, "length")
    if not rows:
        return []
    with paper_style():
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6.5, 2.4))
        for scheme in dict.fromkeys(r["scheme"] for r in rows):
            sel = [r for r in rows if r["scheme"] == scheme]
            lens = sorted({r["length"] for r in sel})
            for ax, key in ((ax1, "prev_token_late"), (ax2, "acc_end")):
                ys = np.array([[r[key] for r in sel if r["length"] == L] for L in lens]).T
                band(ax, lens, ys, label=scheme)
        for ax, lab in ((ax1, "prev-token acc past T_train"), (ax2, "acc_end (outs>=2)")):
            ax.set(xscale="log", xlabel="evaluation length", ylabel=lab)
        ax1.legend()
        return [save_figure(fig, run_dir, "length")]


def figures_hijack_prompts(run_dir: Path) -> list[Path]:
    """Per family: closed-form agreement and the in-context win rate, per scheme."""
    rows = read_split(run_dir, "prompts")
    if not rows:
        return []
    families = list(dict.fromkeys(r["family"] for r in rows))
    schemes = list(dict.fromkeys(r["scheme"] for r in rows))
    with paper_style():
        fig, axes = plt.subplots(1, len(families), figsize=(2.2 * len(families), 2.6),
                                 sharey=True, squeeze=False)
        for ax, fam in zip(axes[0], families):
            for j, scheme in enumerate(schemes):
                sel = [r for r in rows if r["family"] == fam and r["scheme"] == scheme]
                cells = list(dict.fromkeys(r["cell"] for r in sel))
                for key, color in (("agreement", "C2"), ("in_context_wins", "C0"),
                                   ("predicted_in_context", "C1")):
                    ys = np.array([[r[key] for r in sel if r["cell"] == c] for c in cells]).T
                    band(ax, list(range(len(cells))), ys, label=f"{key} ({scheme})",
                         color=color, ls="-" if j == 0 else "--")
                ax.set_xticks(range(len(cells)), cells, rotation=60, fontsize=5)
            ax.set(title=fam, ylim=(-0.02, 1.02))
        axes[0][0].set(ylabel="fraction of prompts")
        axes[0][-1].legend(fontsize=4)
        return [save_figure(fig, run_dir, "prompts")]


def figures_standard(run_dir: Path) -> list[Path]:
    """Validation acc_end and the best head scores over iterations, per positional scheme."""
    rows = read_split(run_dir, "val")
    if not rows:
        return []
    with paper_style():
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(6.5, 2.4))
        for scheme in dict.fromkeys(r["scheme"] for r in rows):
            sel = [r for r in rows if r["scheme"] == scheme]
            band(ax1, *_by_seed(sel, "acc_end"), label=scheme)
            band(ax2, *_by_seed(sel, "prev_score"), label=f"prev ({scheme})")
            band(ax2, *_by_seed(sel, "induction_score"), label=f"induction ({scheme})")
        ax1.set(xlabel="iteration", ylabel="acc_end")
        ax2.set(xlabel="iteration", ylabel="best head score")
        ax1.legend()
        ax2.legend(fontsize=5)
        return [save_figure(fig, run_dir, "standard")]
