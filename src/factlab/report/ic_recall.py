"""Figures of the IC-recall family, redrawn from a run directory's metrics.jsonl alone.

* `pattern_figures`: validation accuracy and the attention statistics over training for every
  seed's chosen lr, with the null model (W_QK projected on c I) beside the learned one; the
  query's attention over 4 prompts at 0/10/50/100% of training.
* `context_figures`: accuracy over all triplets and on held-out subjects against the context
  size k, per seed and pooled with its 95% Wilson interval.
* `init_figures`: each pattern statistic per seed from zero and from small initialisation,
  with the null's value beside.
* `samples_figures`: N_min against the number of triplets per arm (seed mean with [min, max]
  band; sizes whose search did not decide are marked), and against ln(SR) on log-log axes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from factlab.report.plots import (
    Stored,
    annotate,
    curves,
    note,
    seed_text,
    slope_bounds,
    stored_verdict,
    subplots,
    threshold_line,
)
from factlab.report.style import paper_style, save_figure
from factlab.store.run_dir import read_split


def _chosen(run_dir: Path) -> dict[int, float]:
    """seed -> the lr chosen on validation."""
    return {r["seed"]: r["lr"] for r in read_split(run_dir, "best")}


def _series(rows: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else r[key] for r in rows], float)


def _interval(stored: Stored, key: str) -> str:
    """'[0.9774, 0.9814]': a stored 95% Wilson interval."""
    lo_hi = stored.get(key)
    return "n/a" if not lo_hi else f"[{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]"


def _accuracy_note(stored: Stored, target: float, control: bool) -> str:
    """The accuracy rule's numbers: the stored intervals against the target."""
    if control:  # ic-recall-shared-pool: the control holds below the target
        return note(stored, f"all triplets 95% {_interval(stored, 'acc_interval')}",
                    f"holds when the upper end < {target}")
    return note(stored, f"all triplets 95% {_interval(stored, 'acc_interval')}, held-out "
                        f"{_interval(stored, 'heldout_interval')}",
                f"needs both lower ends ≥ {target}")


def _pattern_note(stored: Stored) -> str:
    """The pattern rule's numbers: the pooled statistics (the mean over the stored seeds, as
    `pool_seeds` takes it) with their seed range, against the stored limits."""
    parts = []
    for key in ("asym", "spread"):
        seeds = [v for v in stored.seeds(key) if np.isfinite(v)]
        limit = stored.get(f"{key}_limit")
        value = seed_text(float(np.mean(seeds)) if seeds else None, seeds, ".3f")
        parts.append(f"{key} {value}" + ("" if limit is None else f", needs ≤ {limit:.3f}"))
    return "; ".join(parts)


def pattern_figures(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """ic_training.png (accuracy, role masses, asymmetry/spread vs null) and ic_attention.png."""
    chosen = _chosen(run_dir)
    if not chosen:
        return []
    train = read_split(run_dir, "train")
    per_seed = {s: [r for r in train if r["seed"] == s and r["lr"] == lr]
                for s, lr in chosen.items()}
    length = min(len(v) for v in per_seed.values())
    if length == 0:
        return []
    first = next(iter(per_seed.values()))[:length]
    steps = [r["step"] for r in first]

    def stack(key: str) -> np.ndarray:
        return np.stack([_series(v[:length], key) for v in per_seed.values()])

    ACC_TARGET = rule.ACC_TARGET

    stored = stored_verdict(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    control = cfg.get("experiment") == "ic-recall-shared-pool"
    out = []
    with paper_style():
        fig, (ax1, ax2, ax3) = subplots(1, 3, figsize=(9.0, 2.6))
        curves(ax1, steps, {"val acc": stack("acc"), "null val acc": stack("null_acc")},
               threshold=ACC_TARGET, threshold_label=f"target {ACC_TARGET}",
               xlabel="fine-tuning step", ylabel="accuracy",
               title=f"{len(per_seed)} seeds, lr chosen on validation")
        annotate(ax1, _accuracy_note(stored, ACC_TARGET, control), "below")
        curves(ax2, steps, {r"$\alpha_q$": stack("alpha_q"), r"$A_S$": stack("A_S"),
                            r"$A_A$": stack("A_A"), r"null $A_S$": stack("null_A_S"),
                            r"null $A_A$": stack("null_A_A")},
               xlabel="fine-tuning step", ylabel="attention at the query", title="role masses")
        curves(ax3, steps, {"asymmetry": stack("asym"), "pair spread": stack("spread"),
                            "null asymmetry": stack("null_asym"),
                            "null spread": stack("null_spread")},
               xlabel="fine-tuning step", ylabel="statistic",
               title="pattern vs its null")
        limits = [(k, stored.get(f"{k}_limit")) for k in ("asym", "spread")]
        for (key, limit), color in zip(limits, ("C0", "C1")):
            if limit is not None:  # nearest-hypothesis limits: halfway from null to rival
                threshold_line(ax3, limit, f"{key} limit {limit:.2f}", color=color)
        if all(limit is None for _, limit in limits):  # no stored limits: the rivals
            threshold_line(ax3, 1.0, "rival patterns")
        ax3.legend(fontsize=5)
        annotate(ax3, _pattern_note(stored), "below")
        out.append(save_figure(fig, run_dir, "ic_training"))
        seed0, lr0 = next(iter(chosen.items()))
        pats = [r for r in read_split(run_dir, "pattern")
                if r["seed"] == seed0 and r["lr"] == lr0 and r["pattern"]]
        if pats:
            fig, axes = subplots(1, len(pats), figsize=(1.7 * len(pats), 2.2), squeeze=False)
            vmax = max(float(np.max(r["pattern"])) for r in pats)  # one colour scale
            im = None
            for ax, r in zip(axes[0], pats):
                p = np.array(r["pattern"])
                k = (p.shape[1] - 1) // 2
                im = ax.imshow(p, aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
                ax.set_xticks(range(p.shape[1]))
                ax.set_xticklabels((["s", "a"] * k + ["q", "E"])[:p.shape[1]], fontsize=5)
                ax.set_yticks(range(p.shape[0]))
                ax.set(title=f"{r['frac']} (step {r['step']})", xlabel="key position")
                ax.grid(False)
            axes[0][0].set_ylabel("prompt")
            fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="attention")
            annotate(axes[0][0], note(stored, _pattern_note(stored), width=90), "below")
            out.append(save_figure(fig, run_dir, "ic_attention"))
    return out


def samples_figures(run_dir: Path, rule: SimpleNamespace) -> list[Path]:
    """ic_samples.png: N_min vs S*R per arm with the rule's slope limits through each judged
    arm's first point, and N_min vs ln(S*R) (log-log)."""
    ACC_TARGET, JUDGED_ARM = rule.ACC_TARGET, rule.JUDGED_ARM
    LINEAR_SLOPE_MIN = rule.LINEAR_SLOPE_MIN

    rows = read_split(run_dir, "n_min")
    if not rows:
        return []
    stored = stored_verdict(run_dir)
    limits = {JUDGED_ARM: (stored.get("slope_limit"), "≤"),
              "control": (stored.get("linear_slope_min", default=LINEAR_SLOPE_MIN), "≥")}
    arms = sorted({r["arm"] for r in rows})
    lines = []
    with paper_style():
        fig, (ax1, ax2) = subplots(1, 2, figsize=(7.0, 2.6))
        for i, arm in enumerate(arms):
            sel = [r for r in rows if r["arm"] == arm]
            xs = sorted({r["triplets"] for r in sel})
            seeds = sorted({r["seed"] for r in sel})
            grid = np.full((len(seeds), len(xs)), np.nan)
            for r in sel:
                if r["status"] == "found":
                    grid[seeds.index(r["seed"]), xs.index(r["triplets"])] = r["n_min"]
            x = np.array(xs, float)
            if np.isfinite(grid).any():
                curves(ax1, x, {arm: grid}, logx=True, logy=True, color=f"C{i}")
                curves(ax2, np.log(x), {arm: grid}, logx=True, logy=True, color=f"C{i}")
            for r in sel:
                if r["status"] != "found":  # undecided: mark at the bracket's edge
                    ax1.plot(r["triplets"], r.get("n_hi", 1), "x", color="red", ms=4)
            limit, sign = limits.get(arm, (None, ""))
            if limit is None:
                continue
            first = grid[:, 0][np.isfinite(grid[:, 0])]  # anchor: the geometric seed mean
            y0 = float(np.exp(np.mean(np.log(first)))) if len(first) else \
                float(max(r.get("n_hi", 1) for r in sel if r["triplets"] == xs[0]))
            slope_bounds(ax1, x, (x[0], y0), (limit,), f"{arm} slope limit {limit:.2f}")
            slope = stored.get("arms", arm, "slope")
            lines.append(f"{arm} slope {'n/a' if slope is None else f'{slope:.2f}'}, needs "
                         f"{sign} {limit:.2f}")
        ax1.set(xlabel="stored triplets $S R$",
                ylabel=f"$N_{{\\min}}$ (acc ≥ {ACC_TARGET})", title="sample complexity")
        ax2.set(xlabel=r"$\ln(S R)$", ylabel=r"$N_{\min}$", title="polylog check")
        ax1.legend(fontsize=5, loc="upper left")
        ax1.text(0.98, 0.02, "x: search undecided", transform=ax1.transAxes, ha="right",
                 fontsize=6, color="red")
        annotate(ax2, note(stored, *(lines or ["n/a"]), width=70), "below")
        fig.subplots_adjust(wspace=0.3)
        return [save_figure(fig, run_dir, "ic_samples")]


def context_figures(run_dir: Path) -> list[Path]:
    """ic_context.png: accuracy vs context size k (ic-recall-context)."""
    rows = read_split(run_dir, "context")
    if not rows:
        return []
    stored = stored_verdict(run_dir)
    ks = sorted({r["k"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})

    def grid(key: str) -> np.ndarray:
        out = np.full((len(seeds), len(ks)), np.nan)
        for r in rows:
            out[seeds.index(r["seed"]), ks.index(r["k"])] = r[key]
        return out

    with paper_style():
        fig, ax = subplots(1, 1, figsize=(3.6, 2.6))
        curves(ax, ks, {"all triplets": grid("acc_all"), "held-out subjects":
                        grid("acc_heldout")}, logx=True, xlabel="context size $k$",
               ylabel="accuracy", title=f"{len(seeds)} seeds, M1 calibrated per k")
        iv = stored.get("interval") or {}
        pooled = [(k, iv[str(k)]) for k in ks if str(k) in iv]
        if pooled:  # the pooled 95% Wilson intervals the rule compares
            x = [k for k, _ in pooled]
            mid = [(lo + hi) / 2 for _, (lo, hi) in pooled]
            err = [(hi - lo) / 2 for _, (lo, hi) in pooled]
            ax.errorbar(x, mid, yerr=err, fmt="none", color="k", capsize=2, lw=0.8,
                        label="pooled 95% interval")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.legend(fontsize=5)
        annotate(ax, note(stored, "holds when no larger k is significantly harder and k = "
                          f"{ks[0]} is significantly below k = {ks[-1]}", width=60), "below")
        return [save_figure(fig, run_dir, "ic_context")]


def init_figures(run_dir: Path) -> list[Path]:
    """ic_init.png: each pattern statistic per seed, zero against small initialisation, with
    the null model's value beside (ic-recall-init)."""
    rows = read_split(run_dir, "init")
    if not rows:
        return []
    stored = stored_verdict(run_dir)
    stats = ("alpha_q", "asym", "spread")
    with paper_style():
        fig, ax = subplots(1, 1, figsize=(3.8, 2.6))
        for j, (init, marker) in enumerate((("zero", "o"), ("small", "s"))):
            sel = [r for r in rows if r["init"] == init]
            for i, key in enumerate(stats):
                vals = [r[key] for r in sel]
                ax.plot([i + 0.15 * (2 * j - 1)] * len(vals), vals, marker, color=f"C{j}",
                        ms=3, label=f"{init} init" if i == 0 else None)
        nulls = [r for r in rows if r["init"] == "zero"]
        for i, key in enumerate(stats):
            if key != "alpha_q":  # the null's alpha_q is stored but not a hypothesis end
                ax.plot([i], [np.mean([r[f"null_{key}"] for r in nulls])], "kx", ms=4,
                        label="null" if i == 1 else None)
        ax.set_xticks(range(len(stats)), [r"$\alpha_q$", "asymmetry", "pair spread"])
        ax.set(ylabel="statistic (test prompts)", title="zero vs small init of $W_{QK}$")
        ax.legend(fontsize=5)
        diff = stored.get("paired_difference") or {}
        annotate(ax, note(stored, ", ".join(f"{k} {v:+.3f}" for k, v in diff.items()),
                          f"agree when each paired difference is within "
                          f"{stored.get('margin', default=0.1)}", width=60), "below")
        return [save_figure(fig, run_dir, "ic_init")]
