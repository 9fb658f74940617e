"""Figures of the induction / hijack family, redrawn from a run's metrics.jsonl and summary.json.

Every figure draws the levels its verdict compares against (`threshold_line`) and writes the
numbers it decided on, read from the stored verdict (`plots.stored_verdict`); where the
verdict judged a seed-mean record it stores only per-seed ones, so the mean is taken with the
verdict's own `mean_record` over those stored records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from factlab.analysis.curves import fmt_step, mean_record
from factlab.report.plots import Stored, annotate, bars, note, stored_verdict, subplots
from factlab.report.plots import threshold_line as threshold
from factlab.report.style import band, paper_style, save_figure
from factlab.store.run_dir import read_split

Rows = list[dict[str, Any]]
PROBE_LABELS = {"wo1_acc": "$W_O^2$ (wo1)", "wk1_acc": "$W_K^2$ (wk1)",
                "wk0_acc": "$W_K^1$ (wk0)", "acc_end": "in-context accuracy"}


def _by_seed(rows: Rows, key: str) -> tuple[list[float], np.ndarray]:
    """Steps of the first seed and a [seeds, steps] array of `key` (seeds cut to one length)."""
    seeds = list(dict.fromkeys(r.get("seed", 0) for r in rows))
    curves = [[r for r in rows if r.get("seed", 0) == s] for s in seeds]
    n = min(len(c) for c in curves)
    steps = [r["step"] for r in curves[0][:n]]
    return steps, np.array([[r.get(key, np.nan) for r in c[:n]] for c in curves], dtype=float)


def _seed_mean(stored: Stored) -> dict[str, Any]:
    """The verdict's seed-mean record: `mean_record` over the stored per-seed records."""
    per = stored.get("per_seed", default=[])
    return mean_record(per) if per else {}


def _figure(run_dir: Path, split: str, name: str, figsize: tuple[float, float], ncols: int,
            draw: Callable[[Any, Rows, Stored, dict[str, Any]], None]) -> list[Path]:
    """The shared frame: read `split`, open `ncols` axes in the paper style, let `draw` fill
    them from the rows, the stored verdict and the config, save as `name`."""
    rows = read_split(run_dir, split)
    if not rows:
        return []
    cfg = json.loads((Path(run_dir) / "config.json").read_text())
    with paper_style():
        fig, axes = subplots(1, ncols, figsize=figsize, squeeze=False)
        draw(axes[0], rows, stored_verdict(run_dir), cfg)
        return [save_figure(fig, run_dir, name)]


def figures_induction_head(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Validation losses and the three memory probes over iterations (seed bands), with the
    probe level and the seed-mean milestones the order rule compares."""

    def draw(axes: Any, rows: Rows, stored: Stored, cfg: dict[str, Any]) -> None:
        ax1, ax2 = axes
        m = _seed_mean(stored)
        for key, label in (("loss_bigram", "bigram (outs = 0)"), ("loss_head", "in-context")):
            band(ax1, *_by_seed(rows, key), label=label)
        for key, what, color in (("bigram", f"bigram {rule.BIGRAM_FRACTION:.0%} down", "C0"),
                                 ("head", f"in-context {rule.HEAD_FRACTION:.0%} down", "C1")):
            if math.isfinite(m.get(key, math.inf)):
                threshold(ax1, m[key], f"{what} ({fmt_step(m[key])})", axis="x", color=color)
        ax1.set(xlabel="iteration", ylabel="validation loss (nats)")
        ax1.legend()
        for i, key in enumerate(("wo1_acc", "wk1_acc", "wk0_acc", "acc_end")):
            band(ax2, *_by_seed(rows, key), label=PROBE_LABELS[key], color=f"C{i}")
            probe = key[:-4]
            if i < 3 and math.isfinite(m.get(probe, math.inf)):
                ax2.axvline(m[probe], color=f"C{i}", ls=":", lw=0.8)
        threshold(ax2, rule.PROBE_LEVEL, f"probe level {rule.PROBE_LEVEL}")
        ax2.set(xlabel="iteration", ylabel="probe accuracy")
        ax2.legend(loc="lower right", fontsize=5)
        order = " < ".join(sorted(rule.PROBES, key=lambda k: m.get(k, math.inf)))
        steps = ", ".join(f"{k} {fmt_step(m[k])}" for k in rule.PROBES if k in m)
        annotate(ax2, note(stored, f"probes ≥ {rule.PROBE_LEVEL} at {steps or 'n/a'} "
                                   f"(order {order})",
                           f"needs {' < '.join(rule.PROBES)}, bigram "
                           f"({fmt_step(m.get('bigram', math.inf))}) before in-context "
                           f"({fmt_step(m.get('head', math.inf))})", width=70), "below")

    return _figure(run_dir, "val", "probes", (6.75, 2.6), 2, draw)


def figures_induction_depth(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Test acc_end of one and two layers beside the order-free nulls (per seed), with the
    two bars the rule sets on the best null."""

    def draw(axes: Any, rows: Rows, stored: Stored, cfg: dict[str, Any]) -> None:
        (ax,) = axes
        keys = ("acc1", "acc2", "null_over_represented", "null_count_match",
                "null_shuffled_prefix")
        labels = ("1 layer", "2 layers", "over-rep.", "count-match", "shuffled")
        bars(ax, labels, np.array([[r.get(k, np.nan) for k in keys] for r in rows]),
             ylabel="test accuracy at outs ≥ 2", color="C0")
        null = stored.get("mean", "null_best")
        if null is not None:
            threshold(ax, null + rule.ONE_LAYER_SLACK,
                      f"1 layer ≤ null + {rule.ONE_LAYER_SLACK}", color="C3", ls=":")
            threshold(ax, null + rule.TWO_LAYER_GAIN, f"2 layers ≥ null + {rule.TWO_LAYER_GAIN}")
        ax.set_xticks(range(len(keys)), labels, rotation=30)
        ax.set_ylim(0, 1.05)
        ax.legend(loc="upper right")
        lim = "n/a" if null is None else f"{null + rule.ONE_LAYER_SLACK:.3f}"
        gain = "n/a" if null is None else f"{null + rule.TWO_LAYER_GAIN:.3f}"
        annotate(ax, note(stored, f"1 layer {stored.spread('mean', 'acc1', fmt='.3f')}"
                                  f", needs ≤ {lim}",
                          f"2 layers {stored.spread('mean', 'acc2', fmt='.3f')}, needs ≥ {gain}",
                          width=40), "upper left")

    return _figure(run_dir, "test", "depth", (3.6, 2.6), 1, draw)


def _profile(ax: Any, rows: Rows, rule: SimpleNamespace) -> None:
    """Previous-token accuracy along the query positions of the longest test sequence, per
    scheme (seed band), with T_train / 2 (the end of the judged window) and T_train marked."""
    for scheme in dict.fromkeys(r["scheme"] for r in rows):
        sel = [r for r in rows if r["scheme"] == scheme]
        starts = sorted({r["step"] for r in sel})
        ys = np.array([[r["acc"] for r in sel if r["step"] == s] for s in starts], float).T
        ys[ys < 0] = np.nan  # a window without output tokens
        band(ax, starts, ys, label=scheme)
    T0 = rows[0]["train_len"]
    for x, lab in ((T0 // 2, "$T_{train}/2$"), (T0, "$T_{train}$")):
        ax.axvline(x, color="0.5", lw=0.6, ls="--")
        ax.text(x, 1.0, lab, fontsize=5, ha="center", va="bottom")
    threshold(ax, rule.SHARP, f"sharp ≥ {rule.SHARP}")
    ax.set(xlabel=f"query position (length {rows[0]['length']})",
           ylabel="previous-token accuracy", ylim=(-0.02, 1.08))


def figures_hijack_length(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Previous-token accuracy past T_train and acc_end vs length, per scheme, with the
    sharpness and "lost" levels of the rule and the stored seed-mean numbers; and where along
    the positions the head holds."""
    profile = read_split(run_dir, "profile")

    def draw(axes: Any, rows: Rows, stored: Stored, cfg: dict[str, Any]) -> None:
        ax1, ax2 = axes[:2]
        if profile:
            _profile(axes[2], profile, rule)
        for scheme in dict.fromkeys(r["scheme"] for r in rows):
            sel = [r for r in rows if r["scheme"] == scheme]
            lens = sorted({r["length"] for r in sel})
            for ax, key in ((ax1, "prev_token_late"), (ax2, "acc_end")):
                ys = np.array([[r[key] for r in sel if r["length"] == n] for n in lens], float).T
                ys[ys < 0] = np.nan  # -1: no position past T_train at the training length
                band(ax, lens, ys, label=scheme)
        threshold(ax1, rule.SHARP, f"sharp inside $T/2$ ≥ {rule.SHARP}")
        threshold(ax1, rule.LOST, f"APE lost ≤ {rule.LOST}", color="C3", ls=":")
        for ax, lab in ((ax1, "previous-token accuracy past $T_{train}$"),
                        (ax2, "test accuracy at outs ≥ 2")):
            ax.set(xscale="log", xlabel="evaluation length", ylabel=lab, ylim=(-0.02, 1.02))
            lens = sorted({r["length"] for r in rows})
            ax.set_xticks(lens, [str(n) for n in lens])  # a decade may hold no length
        ax1.figure.subplots_adjust(wspace=0.35)
        ax1.legend(fontsize=5)
        mean, hi = _seed_mean(stored), f"x{max(cfg.get('factors') or [1])}"
        lines = [f"{s}: inside {r[hi]['prev_token_in']:.2f}, past {r[hi]['prev_token_late']:.2f}"
                 for s, r in mean.items() if hi in r and "prev_token_in" in r[hi]]
        annotate(ax2, note(stored, *(lines or ["n/a"]),
                           f"needs inside ≥ {rule.SHARP}; APE past ≤ {rule.LOST}, RPE within "
                           f"{rule.KEPT_SLACK} of inside", width=60), "below")

    return _figure(run_dir, "length", "length", (10.0, 2.6) if profile else (6.75, 2.6),
                   3 if profile else 2, draw)


def figures_hijack_prompts(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Per family: closed-form agreement and the in-context win rate per scheme, with the
    agreement bar and the stored seed-mean agreement / best-constant pair."""

    rows = read_split(run_dir, "prompts")
    n_fam = max(1, len({r["family"] for r in rows}))

    def draw(axes: Any, rows: Rows, stored: Stored, cfg: dict[str, Any]) -> None:
        families = list(dict.fromkeys(r["family"] for r in rows))
        schemes = list(dict.fromkeys(r["scheme"] for r in rows))
        mean = _seed_mean(stored)
        for ax, fam in zip(axes, families):
            for j, scheme in enumerate(schemes):
                sel = [r for r in rows if r["family"] == fam and r["scheme"] == scheme]
                cells = list(dict.fromkeys(r["cell"] for r in sel))
                for key, color in (("agreement", "C2"), ("in_context_wins", "C0"),
                                   ("predicted_in_context", "C1")):
                    ys = np.array([[r[key] for r in sel if r["cell"] == c] for c in cells]).T
                    band(ax, list(range(len(cells))), ys, label=f"{key.replace('_', ' ')} "
                         f"({scheme})", color=color, ls="-" if j == 0 else "--")
                ax.set_xticks(range(len(cells)), cells, rotation=60, fontsize=5)
            threshold(ax, rule.AGREE_MIN, f"agreement ≥ {rule.AGREE_MIN}")
            pairs = [f"{s} {v['families'][fam]['agreement']:.2f}/"
                     f"{v['families'][fam]['constant']:.2f}"
                     for s, v in mean.items() if fam in v.get("families", {})]
            annotate(ax, "\n".join(pairs) or "n/a", "lower left")
            ax.set(title=fam, ylim=(-0.02, 1.02))
        axes[0].set(ylabel="fraction of prompts")
        axes[-1].legend(fontsize=4)
        annotate(axes[0], note(stored, "agreement / best constant per scheme (in each panel)",
                               f"needs ≥ max({rule.AGREE_MIN}, constant)", width=90), "below")

    return _figure(run_dir, "prompts", "prompts", (2.2 * n_fam, 2.6), n_fam, draw)


def figures_standard(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Validation acc_end and the best head scores over iterations, per positional scheme,
    with the null + gain bar, the head-score bar and the stored seed-mean record."""

    def draw(axes: Any, rows: Rows, stored: Stored, cfg: dict[str, Any]) -> None:
        ax1, ax2 = axes
        for scheme in dict.fromkeys(r["scheme"] for r in rows):
            sel = [r for r in rows if r["scheme"] == scheme]
            band(ax1, *_by_seed(sel, "acc_end"), label=scheme)
            band(ax2, *_by_seed(sel, "prev_score"), label=f"prev-token ({scheme})")
            band(ax2, *_by_seed(sel, "induction_score"), label=f"induction ({scheme})")
        mean = _seed_mean(stored)
        nulls = [r["null_best"] for r in mean.values() if "null_best" in r]
        if nulls:  # the order-free null is one batch's, the same for every scheme
            threshold(ax1, float(np.mean(nulls)) + rule.GAIN, f"test null + {rule.GAIN}")
        threshold(ax2, rule.HEAD_MIN, f"head score ≥ {rule.HEAD_MIN}")
        ax1.set(xlabel="iteration", ylabel="accuracy at outs ≥ 2", ylim=(-0.02, 1.02))
        ax2.set(xlabel="iteration", ylabel="best head score", ylim=(-0.02, 1.02))
        ax1.legend()
        ax2.legend(fontsize=5)
        lines = [f"{s}: acc {r['acc_end']:.2f} (null {r['null_best']:.2f}), prev-token "
                 f"{r['prev_score']:.2f}, induction {r['induction_score']:.2f}, P1 in-context "
                 f"{r['p1_in_context']:.2f}, P2 global {r['p2_global']:.2f}"
                 for s, r in mean.items()]
        annotate(ax1, note(stored, *(lines or ["n/a"]),
                           f"needs acc ≥ null + {rule.GAIN}; heads ≥ {rule.HEAD_MIN}; P1, P2 "
                           f"wins ≥ {rule.WIN_MIN} (test batch, seed mean)", width=110),
                 "below")

    return _figure(run_dir, "val", "standard", (6.75, 2.6), 2, draw)
