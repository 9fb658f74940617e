"""Figures of the extraction variants (templates vs repeats, relation-level questions), drawn
from a run's metrics.jsonl alone, each with the bar its verdict compares against and the
stored numbers (`plots.stored_verdict`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from factlab.report.extraction import Rows
from factlab.report.plots import (
    bars,
    note,
    seed_text,
    stored_verdict,
    subplots,
    threshold_line,
)
from factlab.report.style import paper_style, save_figure
from factlab.store.run_dir import read_split


def _by_seed(rows: Rows, match: list[dict], metric: str) -> np.ndarray:
    """[n_seeds, len(match)] of `metric` for the records whose fields equal each `match`."""
    seeds = sorted({r["seed"] for r in rows})
    out = np.full((len(seeds), len(match)), np.nan)
    for r in rows:
        for i, m in enumerate(match):
            if all(r.get(k) == v for k, v in m.items()) and r.get(metric) is not None:
                out[seeds.index(r["seed"]), i] = r[metric]
    return out


def figures_repeats(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Held-out accuracy per (K, mode) with the bar templates must pass at the judged K
    (repeats + MIN_EFFECT), and the seen / unseen template cells beside it."""
    MIN_EFFECT = rule.MIN_EFFECT

    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    ks = sorted({r["K"] for r in rows})
    match = [{"K": k, "multiplicity_mode": m} for k in ks for m in ("repeats", "templates")]
    labels = [f"K={m['K']:g}\n{m['multiplicity_mode']}" for m in match]
    stored = stored_verdict(run_dir)
    acc = _by_seed(rows, match, "test_acc")
    bar = float(np.nanmean(acc[:, -2])) + MIN_EFFECT  # repeats at the largest K, + margin
    with paper_style():
        fig, (ax, bx) = subplots(1, 2, figsize=(6.75, 2.6))
        decide = note(stored, f"gap templates − repeats at K={ks[-1]:g} "
                              f"{stored.spread('gap', fmt='+.3f')}",
                      f"templates {stored.spread('templates_acc', fmt='.3f')}, repeats "
                      f"{stored.spread('repeats_acc', fmt='.3f')}",
                      f"needs gap ≥ {MIN_EFFECT}", width=44)
        bars(ax, labels, acc, threshold=bar, threshold_label=f"repeats + {MIN_EFFECT}",
             decide=decide, ylabel="held-out Q&A accuracy", title="templates vs repeats")
        threshold_line(ax, rows[0]["chance_block"], "chance 1/D", color="gray", ls="-.")
        ax.set_ylim(0, 1.1)
        ax.legend(fontsize=5, loc="lower right")
        # seen / unseen template cells at the judged K; templates at K = tau has no unseen T
        cells = np.concatenate([_by_seed(rows, match[-2:], "test_acc_seen"),
                                _by_seed(rows, match[-2:], "test_acc_cov_unseen")], 1)
        names = ["rep.\nseen", "templ.\nseen", "rep.\nunseen", "templ.\nunseen"]
        keep = [i for i in range(len(names)) if np.isfinite(cells[:, i]).any()]
        bars(bx, [names[i] for i in keep], cells[:, keep], ylabel="held-out Q&A accuracy",
             title=f"K={ks[-1]:g}: by template seen in pre-training (not judged)",
             decide=f"seen-T gap {stored.spread('seen_gap', fmt='+.3f')}")
        bx.set_ylim(0, 1.1)
        fig.subplots_adjust(wspace=0.3)
        return [save_figure(fig, run_dir, "repeats")]


def figures_question(run_dir: Path) -> list[Path]:
    """Held-out accuracy per coverage with template and relation questions (descriptive), the
    in-block chance line and the stored differences."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    cs = sorted({r["coverage"] for r in rows})
    match = [{"coverage": c, "question": q} for c in cs for q in ("template", "relation")]
    labels = [f"c={m['coverage']:g}\n{m['question']}" for m in match]
    stored = stored_verdict(run_dir)
    lines = []
    for c in cs:
        entry = stored.get(f"c={c:g}", default={})
        diff = entry.get("diff") if isinstance(entry, dict) else None
        seeds = entry.get("diff_seeds", []) if isinstance(entry, dict) else []
        lines.append(f"c={c:g}: relation − template {seed_text(diff, seeds, '+.3f')}")
    lines.append("no claim: no direction is stated for this variant")
    with paper_style():
        fig, ax = subplots(1, 1, figsize=(4.5, 2.6))
        bars(ax, labels, _by_seed(rows, match, "test_acc"),
             threshold=rows[0]["chance_block"], threshold_label="chance 1/D",
             decide=note(stored, *lines, width=44), ylabel="held-out Q&A accuracy",
             title="question token: template vs relation")
        ax.set_ylim(0, 1.3)  # room for the note above the bars
        ax.legend(fontsize=5, loc="lower right")
        return [save_figure(fig, run_dir, "question")]
