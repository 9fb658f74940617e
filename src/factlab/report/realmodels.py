"""Figures of the real-model family (popqa-extraction, bios), redrawn from a run's files.

The judged figures draw the bar the verdict's gap must clear (the control's or the base
augmentation's accuracy plus the margin) and note the stored gap; the probe and pre-training
figures are reported beside the verdict and say so.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from factlab.report.plots import annotate, note, stored_verdict, threshold_line
from factlab.report.plots import seed_text as plots_seed_text
from factlab.report.style import paper_style, save_figure
from factlab.store.run_dir import iter_jsonl
from factlab.tasks.bios import ATTRIBUTES

_GROUPS = (("test_covered", "held-out\ncovered"), ("control_covered", "control\ncovered"),
           ("test_uncovered", "held-out\nuncovered"), ("control_uncovered", "control\nuncovered"))


def _finite(x: object) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else float("nan")


def _mean_finite(values: list[float]) -> float:
    """Mean of the finite values; NaN (quietly) when there are none, e.g. a probe not run."""
    kept = [v for v in values if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def popqa_figures(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Accuracy by group after fine-tuning (per mode, mean over seeds); the probe by popularity."""
    records = list(iter_jsonl(Path(run_dir) / "metrics.jsonl"))
    after = [r for r in records if r["split"] == "eval" and r["stage"].startswith("after_")]
    probe = [r for r in records if r["split"] == "probe"]
    out: list[Path] = []
    if not after and not probe:
        return out
    MARGIN, Z = rule.MARGIN, rule.Z

    stored = stored_verdict(run_dir)
    with paper_style():
        import matplotlib.pyplot as plt
        import numpy as np

        if after:
            modes = sorted({r["stage"][6:] for r in after})
            fig, ax = plt.subplots(figsize=(4.5, 2.6))
            width = 0.8 / len(modes)
            for k, mode in enumerate(modes):
                rs = [r for r in after if r["stage"] == f"after_{mode}"]
                vals = [np.nanmean([_finite(r.get(key)) for r in rs]) for key, _ in _GROUPS]
                ax.bar(np.arange(len(_GROUPS)) + k * width, vals, width, label=mode)
            ax.set_xticks(np.arange(len(_GROUPS)) + 0.4 - width / 2,
                          [label for _, label in _GROUPS], fontsize=7)
            ax.set(ylim=(0, 1), ylabel="Q&A accuracy (PopQA rule)",
                   title="after Q&A fine-tuning (mean over seeds)")
            lines = []
            for k, mode in enumerate(modes):  # held-out covered must beat control + margin
                m = stored.get("modes", mode, default={})
                ctl, cov = m.get("control_covered"), m.get("test_covered")
                if ctl is not None:
                    threshold_line(ax, ctl + MARGIN, f"control + {MARGIN} ({mode})",
                                   color=f"C{k}")
                gap = "n/a" if ctl is None or cov is None else f"{cov - ctl:+.3f}"
                lines.append(f"{mode}: gap held-out − control (covered) {gap}, needs ≥ "
                             f"{MARGIN} and > {Z:g} se")
            ax.legend(fontsize=5)
            annotate(ax, note(stored, *lines, width=70), "below")
            out.append(save_figure(fig, run_dir, "groups"))
        bins = [r for r in probe if r.get("group") == "pop_bin"]
        rels = [r for r in probe if r.get("group") == "relation"]
        if bins or rels:
            fig, axes = plt.subplots(1, 2, figsize=(6.75, 2.4))
            for key in ("zero_shot", "few_shot"):
                pts = sorted((r["s_pop_median"], _finite(r.get(key))) for r in bins)
                if pts:
                    axes[0].plot([max(p[0], 1.0) for p in pts], [p[1] for p in pts],
                                 marker="o", ms=3, label=key.replace("_", "-"))
            axes[0].set(xscale="log", ylim=(-0.02, 1.02), xlabel="median s_pop of bin",
                        ylabel="accuracy", title="knowledge probe by popularity")
            axes[0].legend()
            names = sorted({r["prop"] for r in rels})
            for k, key in enumerate(("zero_shot", "few_shot")):
                vals = [_mean_finite([_finite(r.get(key)) for r in rels if r["prop"] == n])
                        for n in names]
                axes[1].barh(np.arange(len(names)) + 0.4 * k, vals, 0.4,
                             label=key.replace("_", "-"))
            axes[1].set_yticks(np.arange(len(names)) + 0.2, names, fontsize=6)
            axes[1].set(xlim=(0, 1), xlabel="accuracy", title="by relation")
            annotate(axes[0], "knowledge probe: reported beside the verdict, not judged",
                     "below")
            out.append(save_figure(fig, run_dir, "probe"))
    return out


def bios_figures(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """Held-out Q&A accuracy per augmentation and attribute; pre-training loss curves."""
    records = list(iter_jsonl(Path(run_dir) / "metrics.jsonl"))
    res = [r for r in records if r["split"] == "result"]
    if not res:
        return []
    out = []
    augments = list(dict.fromkeys(r["augment"] for r in res))
    BIOS_GAP, Z = rule.BIOS_GAP, rule.Z

    stored = stored_verdict(run_dir)
    bar = stored.get("threshold", default=BIOS_GAP)
    base = stored.get("mean", augments[0], "qa_test_acc")
    with paper_style():
        import matplotlib.pyplot as plt
        import numpy as np

        fig, ax = plt.subplots(figsize=(6.75, 2.4))
        width = 0.8 / len(augments)
        keys = [f"qa_test_acc_{a}" for a in ATTRIBUTES] + ["qa_test_acc"]
        for i, aug in enumerate(augments):
            rs = [r for r in res if r["augment"] == aug]
            vals = [np.mean([r[k] for r in rs]) for k in keys]
            ax.bar(np.arange(len(vals)) + i * width, vals, width, label=aug)
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2,
                      [a.replace("_", " ") for a in ATTRIBUTES] + ["all"], fontsize=7)
        ax.set(ylim=(0, 1), ylabel="held-out Q&A accuracy",
               title="bioS: $P_{test}$ after Q&A fine-tuning (mean over seeds)")
        if base is not None:  # the rich augmentation's "all" bar must clear this
            threshold_line(ax, base + bar, f"{augments[0]} + {bar:g}")
        ax.legend(fontsize=5)
        gaps = [r[augments[-1]]["qa_test_acc"] - r[augments[0]]["qa_test_acc"]
                for r in stored.get("results", default=[])
                if augments[0] in r and augments[-1] in r]
        annotate(ax, note(stored, f"gap {augments[-1]} − {augments[0]} (all) "
                                  f"{plots_seed_text(stored.get('gap'), gaps)}, needs ≥ {bar:g} "
                                  f"and > {Z:g} se", width=100), "below")
        out.append(save_figure(fig, run_dir, "bios_accuracy"))
        fig, ax = plt.subplots()
        for aug in augments:
            pts = [r for r in records if r["split"] == "pretrain" and r["augment"] == aug
                   and "train_loss" in r and r.get("seed", 0) == res[0].get("seed", 0)]
            ax.plot([p["step"] for p in pts], [p["train_loss"] for p in pts], label=aug)
        ax.set(xlabel="pre-training step", ylabel="loss", yscale="log",
               title="pre-training (first seed)")
        ax.legend()
        annotate(ax, "pre-training loss: not judged", "below")
        out.append(save_figure(fig, run_dir, "bios_pretrain"))
    return out
