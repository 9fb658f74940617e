"""Figures of the extraction experiments, drawn from the stored metrics.jsonl alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from factlab.probes import extraction as P
from factlab.report.style import band, paper_style, save_figure
from factlab.store.run_dir import read_split

# ----------------------------------------------------------------------------- figures



def _by_seed(rows: list[dict], key: str, values: list, metric: str) -> np.ndarray:
    seeds = sorted({r["seed"] for r in rows})
    return np.array([[next((r[metric] for r in rows if r[key] == v and r["seed"] == s
                            and r.get(metric) is not None), np.nan) for v in values]
                     for s in seeds], float)


def _bound_panel(ax: Any, rows: list[dict]) -> None:
    x = np.array([r["bound_x"] for r in rows])
    err = np.clip(1 - np.array([r["test_acc"] for r in rows]), 1e-4, 1)
    ax.scatter(x, err, s=8, c="C0")
    fit = P.fit_log_error(x, 1 - err)
    if np.isfinite(fit["b"]):
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, np.exp(fit["a"] - fit["b"] * xs), "k--", lw=1,
                label=f"exp({fit['a']:.2f} - {fit['b']:.3g} x), R²={fit['r2']:.2f}")
        ax.legend()
    ax.set(yscale="log", xlabel=r"x = $\tilde N_f K^2 \log|R| / (2|R|^2)$",
           ylabel="held-out error")


def make_trend_figure(key: str, xlabel: str, log_x: bool = False,
                      ) -> Callable[[Path], list[Path]]:
    """Held-out accuracy vs the knob (seed bands) and the bound collapse panel."""

    def figures(run_dir: Path) -> list[Path]:
        rows = read_split(run_dir, "cell")
        if not rows:
            return []
        with paper_style():
            import matplotlib.pyplot as plt

            fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.75, 2.6))
            modes = sorted({r.get("mode", "") for r in rows})
            for mode in modes:
                sel = [r for r in rows if r.get("mode", "") == mode]
                values = sorted({r[key] for r in sel})
                tag = f" ({mode} C)" if mode else ""
                band(ax, values, _by_seed(sel, key, values, "test_acc"), "held-out Q&A" + tag)
                if mode in ("", modes[0]):
                    band(ax, values, _by_seed(sel, key, values, "stored_acc"), "stored",
                         ls=":")
                    band(ax, values, _by_seed(sel, key, values, "retained_acc"),
                         "retained (P_test, pre-train format)", ls="--")
            ax.axhline(rows[0]["chance_block"], color="gray", lw=0.8, label="chance 1/D")
            ax.set(xlabel=xlabel, ylabel="accuracy", ylim=(0, 1.02))
            if log_x:
                ax.set_xscale("log", base=2)
            ax.legend(fontsize=6)
            _bound_panel(bx, [r for r in rows if r.get("mode", "") == modes[0]])
            fig.subplots_adjust(wspace=0.35)
            return [save_figure(fig, run_dir, "trend")]

    return figures


def figures_extraction(run_dir: Path) -> list[Path]:
    """Pre-training and fine-tuning curves, and the four held-out cells."""
    pre, ft, final = (read_split(run_dir, s) for s in ("pretrain", "finetune", "final"))
    if not pre:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(6.75, 2.3))
        steps = [r["step"] for r in pre]
        for key, label in [("acc", "stored acc"), ("mass_subject", "attn on s"),
                           ("mass_template", "attn on T"), ("rel_cos_within", "rel cos (within)"),
                           ("rel_cos_across", "rel cos (across)")]:
            ax.plot(steps, [r[key] for r in pre], label=label)
        ax.set(xlabel="pre-training step", title="acquisition")
        ax.legend(fontsize=5)
        if ft:
            steps = [r["step"] for r in ft]
            for key, label in [("test_acc", "held-out Q&A"), ("qa_train_acc", "fine-tuned Q&A"),
                               ("retained_acc", "retained"), ("test_hallucination",
                                                              "hallucination")]:
                bx.plot(steps, [r[key] for r in ft], label=label)
            bx.set(xlabel="fine-tuning step", title="extraction", ylim=(0, 1.02))
            bx.legend(fontsize=5)
        if final:
            f = final[-1]
            cells = ["cov_seen", "cov_unseen", "unc_seen", "unc_unseen"]
            vals = [f.get(f"test_acc_{c}") for c in cells]
            cx.bar(range(4), [v if v is not None else 0 for v in vals], color="C2")
            cx.set_xticks(range(4), ["C,J", "C,¬J", "¬C,J", "¬C,¬J"], fontsize=6)
            cx.axhline(f["chance_block"], color="gray", lw=0.8)
            cx.set(ylim=(0, 1), title="held-out cells")
        return [save_figure(fig, run_dir, "extraction")]


def figures_lora(run_dir: Path) -> list[Path]:
    """Held-out accuracy vs LoRA rank (full FT dashed) and the full-FT update spectra."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.75, 2.6))
        fig.subplots_adjust(wspace=0.35)
        for i, c in enumerate(sorted({r["coverage"] for r in rows})):
            sel = [r for r in rows if r["coverage"] == c]
            ranks = sorted({r["rank"] for r in sel if r["rank"] > 0})
            band(ax, ranks, _by_seed(sel, "rank", ranks, "test_acc"), f"LoRA, c={c:g}",
                 color=f"C{i}")
            ax.axhline(np.mean([r["test_acc"] for r in sel if r["rank"] == 0]), ls="--",
                       color=f"C{i}", lw=1, label=f"full FT, c={c:g}")
        ranks = sorted({r["rank"] for r in rows if r["rank"] > 0})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(k) for k in ranks])
        ax.minorticks_off()
        ax.set(xlabel="LoRA rank", ylabel="held-out Q&A acc", ylim=(0, 1.02))
        ax.legend(fontsize=6)
        full = [r for r in rows if r["rank"] == 0 and r.get("dW_in_sv")]
        for key, ls in [("dW_in_sv", "-"), ("dW_QK_sv", "--")]:
            for j, r in enumerate(full[:3]):
                sv = np.array(r.get(key) or [np.nan])
                bx.plot(np.arange(1, len(sv) + 1), sv / sv[0], ls=ls, color=f"C{j}", marker=".",
                        label=f"{key[:-3]} (c={r['coverage']:g}, seed {r['seed']})")
        bx.set(yscale="log", xlabel="index i", ylabel=r"$\sigma_i / \sigma_1$",
               title="full fine-tuning update")
        bx.legend(fontsize=5)
        return [save_figure(fig, run_dir, "lora")]


def figures_schedule(run_dir: Path) -> list[Path]:
    """Pre-training accuracy curves per schedule (first seed) and held-out accuracy bars."""
    pre, rows = read_split(run_dir, "pretrain"), read_split(run_dir, "cell")
    if not rows:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.75, 2.6))
        fig.subplots_adjust(wspace=0.35)
        seed0 = min(r["seed"] for r in rows)
        for name in dict.fromkeys(r["schedule"] for r in rows):
            curve = [r for r in pre if r["schedule"] == name and r["seed"] == seed0]
            ax.plot([r["step"] for r in curve], [r["acc"] for r in curve], label=name)
        ax.set(xlabel="pre-training step", ylabel="stored acc", title=f"seed {seed0}")
        ax.legend(fontsize=6)
        names = list(dict.fromkeys(r["schedule"] for r in rows))
        for k, phase in enumerate(("pretrain", "finetune")):
            vals = [[r["test_acc"] for r in rows if r["phase"] == phase and r["schedule"] == n]
                    for n in names]
            means = [np.mean(v) for v in vals]
            err = [[m - min(v) for m, v in zip(means, vals)], [max(v) - m for m, v in
                                                               zip(means, vals)]]
            bx.bar(np.arange(len(names)) + 0.4 * k, means, 0.4, yerr=err,
                   label=f"schedule on {phase}")
        bx.set_xticks(np.arange(len(names)) + 0.2, names, fontsize=6)
        bx.set(ylabel="held-out Q&A acc", ylim=(0, 1))
        bx.legend(fontsize=6)
        return [save_figure(fig, run_dir, "schedule")]


def figures_attention_only(run_dir: Path) -> list[Path]:
    """Stored and held-out accuracy per model variant (seed min-max as error bars)."""
    rows = read_split(run_dir, "cell")
    if not rows:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        names = list(dict.fromkeys(r["variant"] for r in rows))
        for k, key in enumerate(("stored_acc", "test_acc")):
            vals = [[r[key] for r in rows if r["variant"] == n] for n in names]
            means = [np.mean(v) for v in vals]
            err = [[m - min(v) for m, v in zip(means, vals)], [max(v) - m for m, v in
                                                               zip(means, vals)]]
            ax.bar(np.arange(len(names)) + 0.4 * k, means, 0.4, yerr=err,
                   label="stored" if k == 0 else "held-out Q&A")
        ax.set_xticks(np.arange(len(names)) + 0.2, names, fontsize=7)
        ax.set(ylabel="accuracy", ylim=(0, 1.02))
        ax.legend(fontsize=6)
        return [save_figure(fig, run_dir, "attention_only")]


