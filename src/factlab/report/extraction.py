"""Figures of the extraction family, drawn from a run's metrics.jsonl alone (one style).

Each function takes a run directory and returns the PNG paths it wrote; the experiments of
`factlab.experiments.extraction*` name them as their `figures`. Every figure draws the bar its
verdict compares against (the rule's constants, imported from the experiment) and notes the
numbers the stored verdict decided on (`plots.stored_verdict`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from factlab.analysis.extraction_stats import log_error_fit
from factlab.pipelines.extraction import STORED_MIN
from factlab.report.plots import (
    Stored,
    annotate,
    bars,
    curves,
    note,
    stored_verdict,
    subplots,
    threshold_line,
)
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


# the judged series of a trend: (legend label, row metric, stored effect key, stored rho key)
TWO_PARTS = (("held-out", "test_acc", "effect", "rho"),
             ("held-out, covered & seen", "test_acc_cov_seen", "effect_cov_seen",
              "rho_cov_seen"))


def trend_rule(ax: Any, stored: Stored, values: Sequence[Any], series: dict[str, np.ndarray],
               parts: Sequence[tuple[str, str, str, str]], rule: SimpleNamespace,
               sign: int = 1, loc: str = "below") -> None:
    """The trend rule on a curve panel: a line at first point + sign * MIN_EFFECT per judged
    series (what its end must pass) and the stored change and Spearman rho."""
    MIN_EFFECT, RHO_MIN = rule.MIN_EFFECT, rule.RHO_MIN

    lines = []
    for i, (label, _, effect, rho) in enumerate(parts):
        first = np.nanmean(series[label][:, 0])
        threshold_line(ax, first + sign * MIN_EFFECT, f"{label}: first {'+' if sign > 0 else '−'}"
                       f" {MIN_EFFECT}", color=f"C{i}", ls=":")
        r = stored.get(rho)
        lines.append(f"{label} change {stored.spread(effect, fmt='+.3f')}, ρ "
                     f"{'n/a' if r is None else f'{r:+.2f}'}")
    lines.append(f"needs {'ρ ≥' if sign > 0 else 'ρ ≤'} {sign * RHO_MIN:+.1f} and change "
                 f"≥ {MIN_EFFECT} {'up' if sign > 0 else 'down'} the knob")
    annotate(ax, note(stored, *lines, width=60), loc)


def make_trend_figure(key: str, xlabel: str, rule: SimpleNamespace, log_x: bool = False,
                      sign: int = 1, parts: Sequence[tuple[str, str, str, str]] = TWO_PARTS,
                      ) -> Callable[[Path], list[Path]]:
    """Held-out accuracy (overall and covered-and-seen) vs the knob with the trend rule's bars
    and stored numbers (`parts` are the judged series; `sign` -1: a falling trend; `rule` the
    verdict's constants), and the collapse panel."""

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
            threshold_line(ax, rows[0]["chance_block"], "chance 1/D", color="gray", ls="-.")
            trend_rule(ax, stored_verdict(run_dir), values, series, parts, rule, sign)
            ax.set_ylim(0, 1.02)
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.minorticks_off()
            ax.legend(fontsize=5)
            collapse_panel(bx, rows)
            fig.subplots_adjust(wspace=0.35)
            return [save_figure(fig, run_dir, "trend")]

    return figures


def figures_coverage(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Trend (random C), whole-relation C by covered/uncovered relation, hallucination vs c."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    EXTRACT_MIN, NEAR_CHANCE_FACTOR = rule.EXTRACT_MIN, rule.NEAR_CHANCE_FACTOR

    paths = make_trend_figure("coverage", "coverage c", rule, parts=TWO_PARTS[:1])(run_dir)
    rel = [r for r in rows if r.get("mode") == "relations"]
    rnd = [r for r in rows if r.get("mode") == "random"]
    stored = stored_verdict(run_dir)
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
            near = stored.get("near_chance",
                              default=NEAR_CHANCE_FACTOR * rel[0]["chance_block"])
            threshold_line(ax, near, f"uncovered ≤ {NEAR_CHANCE_FACTOR:g}/D", color="C0", ls=":")
            threshold_line(ax, EXTRACT_MIN, f"retained ≥ {EXTRACT_MIN}", color="C2")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=5)
            annotate(ax, note(stored, f"smallest c: uncovered relations "
                                      f"{stored.spread('uncovered_acc', fmt='.3f')}, needs ≤ "
                                      f"{near:.3f}",
                              f"retained {stored.spread('retained_low_c', fmt='.3f')}, needs ≥ "
                              f"{EXTRACT_MIN}", width=60), "below")
        cs = sorted({r["coverage"] for r in rnd})
        curves(bx, cs, {"hallucination (random C)": by_seed(rnd, "coverage", cs,
                                                            "test_hallucination"),
                        "error (random C)": 1 - by_seed(rnd, "coverage", cs, "test_acc")},
               xlabel="coverage c", ylabel="rate")
        bx.set_ylim(0, 1.02)
        bx.legend(fontsize=5)
        annotate(bx, "hallucination: reported, not judged", "upper right")
        fig.subplots_adjust(wspace=0.35)
        paths.append(save_figure(fig, run_dir, "coverage"))
    return paths


def figures_size(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Held-out accuracy vs Ñ_f per (K, tau) setup, and the collapse of every cell on x."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    with paper_style():
        fig, (ax, bx) = subplots(1, 2, figsize=(6.75, 2.6))
        for i, setup in enumerate(dict.fromkeys(r["setup"] for r in rows)):
            sel = [r for r in rows if r["setup"] == setup]
            ns = sorted({r["n_finetune"] for r in sel})
            series = {setup: by_seed(sel, "n_finetune", ns, "test_acc")}
            curves(ax, ns, series, logx=True, color=f"C{i}")
            if i == 0:  # the verdict judges the first (default) setup's trend
                trend_rule(ax, stored_verdict(run_dir), ns, series,
                           ((setup, "test_acc", "effect", "rho"),), rule)
        ax.set(xlabel=r"fine-tuning sequences $N_f$", ylabel="held-out Q&A acc", ylim=(0, 1.02))
        ax.legend(fontsize=5)
        collapse_panel(bx, rows, group="setup")
        fig.subplots_adjust(wspace=0.35)
        return [save_figure(fig, run_dir, "collapse")]


def figures_extraction(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Pre-training curves, fine-tuning validation curves (first seed), held-out cells."""
    pre, ft, final = (read_split(run_dir, s) for s in ("pretrain", "finetune", "final"))
    if not final:
        return []
    EXTRACT_MIN = rule.EXTRACT_MIN

    seed0 = min(r["seed"] for r in final)
    stored = stored_verdict(run_dir)
    with paper_style():
        fig, (ax, bx, cx) = subplots(1, 3, figsize=(6.75, 2.3))
        sel = [r for r in pre if r.get("seed") == seed0]
        for key, label in [("acc", "stored acc"), ("mass_subject", "attn on s"),
                           ("mass_template", "attn on T")]:
            ax.plot([r["step"] for r in sel], [r[key] for r in sel], label=label)
        threshold_line(ax, STORED_MIN, f"stored ≥ {STORED_MIN} (prerequisite)")
        ax.set(xlabel="pre-training step", title=f"acquisition (seed {seed0})")
        ax.legend(fontsize=5)
        sel = [r for r in ft if r.get("seed") == seed0]
        for lr in dict.fromkeys(r["lr"] for r in sel):
            pts = [r for r in sel if r["lr"] == lr]
            bx.plot([r["step"] for r in pts], [r["val_acc"] for r in pts], label=f"lr {lr:g}")
        bx.set(xlabel="fine-tuning step", ylabel="$P_{val}$ Q&A accuracy", ylim=(0, 1.02))
        bx.legend(fontsize=5)
        cells = ["", "_cov_seen", "_cov_unseen", "_unc_seen", "_unc_unseen"]
        vals = np.array([[r.get(f"test_acc{c}") if r.get(f"test_acc{c}") is not None
                          else np.nan for c in cells] for r in final], float)
        bars(cx, ["all", "C,J", "C,¬J", "¬C,J", "¬C,¬J"], vals, title="held-out cells",
             threshold=EXTRACT_MIN, threshold_label=f"needs all ≥ {EXTRACT_MIN}")
        threshold_line(cx, final[0]["chance_block"], "chance 1/D", color="gray", ls="-.")
        cx.set_ylim(0, 1.02)
        cx.legend(fontsize=5, loc="upper right")
        annotate(cx, note(stored, f"held-out Q&A {stored.spread('test_acc', fmt='.3f')}, needs "
                                  f"≥ {EXTRACT_MIN}", width=60), "below")
        return [save_figure(fig, run_dir, "extraction")]


def figures_acquisition(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Attention mass on s+T against uniform, relation gap against its permutation null."""
    final = read_split(run_dir, "final")
    if not final:
        return []
    ATTENTION_MAJORITY, NULL_QUANTILE = rule.ATTENTION_MAJORITY, rule.NULL_QUANTILE

    stored = stored_verdict(run_dir)
    per_rel = all("rel_gaps" in r for r in final)
    with paper_style():
        fig, axes = subplots(1, 3 if per_rel else 2, figsize=(9.0 if per_rel else 6.75, 2.4))
        ax, bx = axes[0], axes[1]
        mass = np.array([[r["mass_subject"] + r["mass_template"], r["uniform_mass"]]
                         for r in final])
        bars(ax, ["s + T", "uniform"], mass, threshold=ATTENTION_MAJORITY,
             threshold_label=f"needs ≥ {ATTENTION_MAJORITY}", ylabel="attention mass at ANS")
        annotate(ax, note(stored, f"attention on s+T {stored.spread('attention_mass', fmt='.3f')}"
                                  f", needs ≥ {ATTENTION_MAJORITY}", width=40), "below")
        gap = np.array([[r["rel_cos_within"] - r["rel_cos_across"], r["rel_gap_null"]]
                        for r in final])
        bars(bx, ["within − across", f"null q{NULL_QUANTILE:.2f}"], gap, ylabel="cosine gap")
        null = stored.get("relation_null")
        if null is None:  # a summary from before the null was stored: the rows' seed mean
            null = float(np.mean([r["rel_gap_null"] for r in final]))
        threshold_line(bx, null, f"needs > null q{NULL_QUANTILE:.2f}")
        bx.legend(fontsize=5)
        annotate(bx, f"gap {stored.spread('relation_gap', fmt='+.3f')}, needs > "
                     f"{null:+.3f}", "below")
        if per_rel:  # each relation's gap against its own Bonferroni null (mean over seeds)
            cx = axes[2]
            gaps = np.mean([r["rel_gaps"] for r in final], axis=0)
            nulls = np.mean([r["rel_gap_nulls"] for r in final], axis=0)
            idx = np.arange(len(gaps))
            cx.bar(idx, gaps, color="C0", label="relation's gap")
            cx.scatter(idx, nulls, marker="_", s=60, color="k", zorder=3,
                       label="its null (Bonferroni)")
            cx.set(xlabel="relation", ylabel="cosine gap")
            cx.legend(fontsize=5)
            annotate(cx, f"{int(np.sum(gaps > nulls))}/{len(gaps)} above their null "
                         "(seed mean); needs all", "below")
        fig.subplots_adjust(wspace=0.35)
        return [save_figure(fig, run_dir, "acquisition")]


def figures_lora(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Held-out and retained accuracy per (target, rank) beside full FT; update spectra."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    LORA_GAP, TOP_ENERGY_MIN = rule.LORA_GAP, rule.TOP_ENERGY_MIN

    names = list(dict.fromkeys(r["variant"] for r in rows))
    stored = stored_verdict(run_dir)
    with paper_style():
        fig, (ax, bx) = subplots(1, 2, figsize=(6.75, 2.6))
        seeds = sorted({r["seed"] for r in rows})
        for k, metric in enumerate(("test_acc", "retained_acc")):
            vals = by_seed(rows, "variant", names, metric)
            pos = np.arange(len(names)) + 0.4 * k
            ax.bar(pos, np.nanmean(vals, 0), 0.4, label=metric.replace("_acc", ""))
        ax.set_xticks(np.arange(len(names)) + 0.2, names, fontsize=4, rotation=60)
        ax.set(ylabel="accuracy", ylim=(0, 1.02), title=f"{len(seeds)} seeds")
        full_acc = stored.get("full_acc")
        if full_acc is not None:
            threshold_line(ax, full_acc - LORA_GAP, f"full FT − {LORA_GAP}")
        ax.legend(fontsize=5)
        annotate(ax, note(stored, f"best attention adapter "
                                  f"{stored.spread('best_attention_acc', fmt='.3f')}, full "
                                  f"{stored.spread('full_acc', fmt='.3f')}",
                          f"gap {stored.spread('gap', fmt='.3f')}, needs ≤ {LORA_GAP}", width=60),
                 "below")
        full = [r for r in rows if r["variant"] == "full" and r.get("dW_QK_sv")]
        for key, ls in [("dW_QK_sv", "-"), ("dW_in_sv", "--")]:
            for j, r in enumerate(full[:3]):
                energy = np.array(r.get(key) or [np.nan], float) ** 2  # the rule's energy share
                bx.plot(np.arange(1, len(energy) + 1), energy / energy.sum(), ls=ls,
                        color=f"C{j}", marker=".", label=f"{key[:-3]} seed {r['seed']}")
        threshold_line(bx, TOP_ENERGY_MIN, f"$\\Delta W_{{QK}}$ top ≥ {TOP_ENERGY_MIN}")
        bx.set(xlabel="singular index $i$", ylabel=r"$\sigma_i^2 / \sum_j \sigma_j^2$",
               ylim=(0, 1.02), title="full fine-tuning update")
        bx.legend(fontsize=5)
        null = stored.get("align_null")
        annotate(bx, f"$\\Delta W_{{QK}}$ top energy {stored.spread('dW_QK_top_energy')}, needs "
                     f"≥ {TOP_ENERGY_MIN}\n|cos| with format "
                     f"{stored.spread('dW_QK_align_format')}, needs > "
                     f"{'random q99' if null is None else f'{null:.2f}'}", "below")
        fig.subplots_adjust(wspace=0.35)
        return [save_figure(fig, run_dir, "lora")]


def figures_schedule(run_dir: Path) -> list[Path]:
    """Held-out accuracy per schedule at its tuned lr, for each phase."""
    rows = read_split(run_dir, "selected")
    if not rows:
        return []
    stored = stored_verdict(run_dir)
    with paper_style():
        fig, axes = subplots(1, 2, figsize=(6.75, 2.4))
        for ax, phase in zip(axes, ("pretrain", "finetune")):
            sel = [r for r in rows if r["phase"] == phase]
            names = list(dict.fromkeys(r["schedule"] for r in sel))
            bars(ax, names, by_seed(sel, "schedule", names, "test_acc"),
                 ylabel="held-out Q&A accuracy", title=f"schedule on {phase} (tuned lr)")
            if sel and sel[0].get("chance_block") is not None:  # no claim: chance is the null
                threshold_line(ax, sel[0]["chance_block"], "chance 1/D", color="gray", ls="-.")
                ax.legend(fontsize=5)
            ax.set_ylim(0, 1.02)
            accs = {n: stored.get(f"{phase}/{n}", "test_acc") for n in names}
            best = max((n for n in names if accs[n] is not None), key=accs.get, default=None)
            annotate(ax, note(stored, "no claim, no threshold" if best is None else
                              f"best {best} {accs[best]:.3f} (no claim, no threshold)"), "below")
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
        bars(ax, names, by_seed(rows, "variant", names, "stored_acc"), threshold=STORED_MIN,
             threshold_label=f"stored {STORED_MIN}", ylabel="stored accuracy")
        ax.set_ylim(0, 1.05)
        ax.legend(loc="lower right")
        stored = stored_verdict(run_dir)
        annotate(ax, note(stored, f"1 head {stored.spread('one_head_stored', fmt='.3f')}, needs "
                                  f"< {STORED_MIN}",
                          f"{names[-1]} {stored.spread('multi_head_stored', fmt='.3f')}, needs ≥ "
                          f"{STORED_MIN}", width=50), "below")
        return [save_figure(fig, run_dir, "attention_only")]
