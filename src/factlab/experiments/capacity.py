"""Associative-memory capacity (arXiv 2412.06538 Fig. 1; specs/ic_recall.md §8.1-8.2).

For each width d (and MLP ratio c = m/d) and seed, bisect the number of associations N for the
largest N that a trained memory stores at >= 99% accuracy (best over the lr grid). The claim is
that capacity grows linearly in the parameter count P (d^2, or 2md) up to a log factor.

Judged by the least-squares slope b of log(capacity) on log(P) over the grid (seed means):
the claim holds when 0.70 <= b <= 1.10. Why: exactly linear gives b = 1; the paper's law
P = c N ln N gives b = ln N / (ln N + 1), about 0.8-0.9 at these sizes; a capacity that grew
only like d (sqrt P) would give 0.5, which the lower bound rejects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from factlab.analysis.search import bisect_largest
from factlab.analysis.verdicts import Verdict, decide, inconclusive
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.pipelines.capacity_search import capacity_rows_lockstep
from factlab.report.style import band, paper_style, save_figure
from factlab.runtime import derive_seed, progress
from factlab.store.run_dir import read_split
from factlab.train.loop import TrainConfig
from factlab.train.recipes import train_memory

SLOPE_RANGE = (0.70, 1.10)


@dataclasses.dataclass
class CapacityConfig(ExperimentConfig):
    """Grid of memory sizes, seeds, lr grid and bisection tolerance."""

    d: tuple[int, ...] = (8, 11, 16, 22, 32)
    width_ratio: tuple[float, ...] = (2.0,)  # m = int(c * d); MLP memory only
    seeds: tuple[int, ...] = (0, 1)
    lr_grid: tuple[float, ...] = ()  # empty: use train.lr alone; capacity = best over the grid
    target: Literal["identity", "binned"] = "identity"  # f*(x) = x, or floor(M x / N)
    n_bins: int = 32  # M for the binned target
    threshold: float = 0.99  # accuracy that counts as "stored"
    tolerance: float = 1.05  # bisection stops once hi / lo <= tolerance (paper: 1.01)
    ensemble: bool = False  # train all seeds' probes as one stacked model (factlab.train.ensemble)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adam", lr=0.1, steps=1500, eval_every=32, target_acc=0.99))

    def check(self) -> None:
        super().check()
        require(len(self.d) >= 1, "d", "needs at least one width")
        bad = [x for x in self.d if x < 2]
        require(not bad, "d", f"every width must be >= 2, got {bad[0] if bad else ''}")
        require(all(c > 0 for c in self.width_ratio), "width_ratio", "every ratio must be > 0")
        require(len(self.seeds) >= 1 and min(self.seeds) >= 0, "seeds",
                "needs at least one seed, all >= 0")
        require(all(lr > 0 for lr in self.lr_grid), "lr_grid", "every lr must be > 0")
        require(0 < self.threshold <= 1, "threshold", "must be in (0, 1]")
        require(self.tolerance > 1, "tolerance", f"must be > 1, got {self.tolerance}")
        require(self.n_bins >= 2, "n_bins", "must be >= 2")


def _cells(kind: str, cfg: CapacityConfig) -> list[tuple[int, float, int]]:
    """(d, ratio, width) for every grid cell; the linear memory has no width."""
    if kind == "linear":
        return [(d, 0.0, 0) for d in cfg.d]
    return [(d, c, max(1, int(c * d))) for c in cfg.width_ratio for d in cfg.d]


def _params(kind: str, d: int, width: int) -> int:
    return d * d if kind == "linear" else 2 * width * d


def _bracket(kind: str, d: int, ratio: float) -> tuple[int, int]:
    """The reference search bracket: [d, d^2/2] (linear) or [d, c d^2] (MLP)."""
    return (d, max(d + 1, d * d // 2)) if kind == "linear" else (d, max(d + 1, int(ratio * d * d)))


def fit_slope(params: np.ndarray, capacity: np.ndarray) -> float:
    """Least-squares slope of log(capacity) on log(params)."""
    return float(np.polyfit(np.log(params), np.log(capacity), 1)[0])


def make_run(kind: Literal["linear", "mlp"]) -> Callable[[CapacityConfig, RunContext], Verdict]:
    """The run function of capacity-linear or capacity-mlp."""

    def run(cfg: CapacityConfig, ctx: RunContext) -> Verdict:
        lrs = cfg.lr_grid or (cfg.train.lr,)
        cells = _cells(kind, cfg)
        probe = 0
        rows = []
        lockstep: dict = {}  # (d, width) -> {seed: (capacity, probe records)}
        jobs = [(cell, seed) for cell in cells for seed in cfg.seeds]
        for (d, ratio, width), seed in progress(jobs, total=len(jobs), desc=f"capacity-{kind}",
                                                enabled=ctx.show_progress):
            memo: dict[int, bool] = {}

            def succeeds(n: int) -> bool:
                nonlocal probe
                if n not in memo:
                    memo[n] = False
                    for lr in lrs:
                        run_seed = derive_seed(cfg.seed, seed, d, width, n)
                        acc, steps = train_memory(kind, n, d, width, lr, run_seed, cfg,
                                                  ctx.device)
                        ok = acc >= cfg.threshold
                        ctx.log(probe, "search", d=d, width=width, ratio=ratio, n=n, seed=seed,
                                lr=lr, acc=acc, steps=steps, success=ok)
                        probe += 1
                        if ok:
                            memo[n] = True
                            break
                return memo[n]

            lo, hi = _bracket(kind, d, ratio)
            if cfg.ensemble:  # every seed of this width at once; logs what the loop logs
                if (d, width) not in lockstep:
                    lockstep[d, width] = dict(zip(cfg.seeds, capacity_rows_lockstep(
                        kind, cfg, d, width, lo, hi, ctx.device)))
                cap, records = lockstep[d, width][seed]
                for rec in records:
                    ctx.log(probe, "search", d=d, width=width, ratio=ratio, seed=seed, **rec)
                    probe += 1
            else:
                cap = bisect_largest(lo, hi, succeeds, cfg.tolerance)
            params = _params(kind, d, width)
            rows.append({"d": d, "ratio": ratio, "width": width, "seed": seed,
                         "params": params, "capacity": cap})
            ctx.log(len(rows) - 1, "capacity", d=d, width=width, ratio=ratio, seed=seed,
                    params=params, capacity=cap, at_bracket_top=cap == hi)
        return _verdict(kind, rows)

    return run


def _verdict(kind: str, rows: list[dict]) -> Verdict:
    slopes = {}
    metrics: dict = {"capacity": {}}
    for ratio in sorted({r["ratio"] for r in rows}):
        sel = [r for r in rows if r["ratio"] == ratio]
        ds = sorted({r["d"] for r in sel})
        params = np.array([next(r["params"] for r in sel if r["d"] == d) for d in ds], float)
        caps = np.array([np.mean([r["capacity"] for r in sel if r["d"] == d]) for d in ds])
        label = "linear" if kind == "linear" else f"c={ratio:g}"
        metrics["capacity"][label] = {str(d): float(c) for d, c in zip(ds, caps)}
        if len(ds) >= 2:
            slopes[label] = fit_slope(params, caps)
        # P / (N ln N): the constant of the paper's guide line, per size
        nlogn = caps * np.log(np.maximum(caps, 2))
        metrics.setdefault("params_per_nlogn", {})[label] = float(np.median(params / nlogn))
    metrics["slope"] = slopes
    metrics["slope_range"] = list(SLOPE_RANGE)
    if not slopes:
        return inconclusive("needs at least two widths d to fit a slope", metrics=metrics)
    lo, hi = SLOPE_RANGE
    holds = all(lo <= s <= hi for s in slopes.values())
    fitted = ", ".join(f"{k}: {v:.2f}" for k, v in slopes.items())
    const = ", ".join(f"{k}: {v:.2f}" for k, v in metrics["params_per_nlogn"].items())
    evidence = (f"slope of log capacity vs log params = {fitted} (linear-up-to-log needs "
                f"{lo:.2f}..{hi:.2f}); median P/(N ln N) = {const}")
    return decide(holds, evidence, metrics)


def make_figures(kind: str) -> Callable[[Path], list[Path]]:
    """Log-log capacity vs parameters with seed bands and the paper's guide line."""
    guide = 1.3 if kind == "linear" else 0.35

    def figures(run_dir: Path) -> list[Path]:
        rows = read_split(run_dir, "capacity")
        if not rows:
            return []
        with paper_style():
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots()
            for ratio in sorted({r["ratio"] for r in rows}):
                sel = [r for r in rows if r["ratio"] == ratio]
                ds = sorted({r["d"] for r in sel})
                seeds = sorted({r["seed"] for r in sel})
                params = [next(r["params"] for r in sel if r["d"] == d) for d in ds]
                caps = np.array([[next((r["capacity"] for r in sel if r["d"] == d
                                        and r["seed"] == s), np.nan) for d in ds]
                                 for s in seeds])
                band(ax, params, caps, "linear memory" if kind == "linear" else f"m = {ratio:g} d")
            n = np.geomspace(max(2, min(r["capacity"] for r in rows) / 2),
                             max(r["capacity"] for r in rows) * 2, 50)
            name = "d^2" if kind == "linear" else "md"
            scale = 1.0 if kind == "linear" else 2.0  # the MLP guide is on m*d, P = 2md
            ax.plot(scale * guide * n * np.log(n), n, "k--", lw=1,
                    label=f"{name} = {guide:g} N ln N")
            ax.set(xscale="log", yscale="log", xlabel="parameters P",
                   ylabel="capacity N (acc >= 0.99)", title=f"{kind} associative memory")
            ax.legend()
            return [save_figure(fig, run_dir, "capacity")]

    return figures


_PAPER_COMMON = {"seeds": "0,1,11,111,42", "tolerance": 1.01,
                 "lr_grid": "0.01,0.1,1,10,1000", "train.eval_every": 32}

CAPACITY_LINEAR = Experiment(
    name="capacity-linear",
    claim="A linear associative memory W in R^{d x d} stores a number of associations "
          "linear in its d^2 parameters, up to a log factor.",
    config=CapacityConfig,
    run=make_run("linear"),
    figures=make_figures("linear"),
    presets={"quick": {"train.lr": 1.0},
             "paper": {**_PAPER_COMMON, "d": "8,11,16,22,32,45,64,90,128,181,256",
                       "train.steps": 4096}},
)

CAPACITY_MLP = Experiment(
    name="capacity-mlp",
    claim="A ReLU MLP memory of width m stores a number of associations linear in its 2md "
          "parameters, up to a log factor.",
    config=CapacityConfig,
    run=make_run("mlp"),
    figures=make_figures("mlp"),
    presets={"quick": {"train.lr": 0.03},
             "paper": {**_PAPER_COMMON, "d": "8,11,16,22,32,45,64,90",
                       "width_ratio": "1,2,4,8", "train.steps": 32768}},
)
