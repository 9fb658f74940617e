"""Associative-memory capacity (arXiv 2412.06538 Fig. 1): capacity-linear and capacity-mlp.

For each width d (and MLP ratio c = m/d) and each seed in `cfg.seeds`, bisect the number of
associations N for the largest N that a trained memory stores at >= `threshold` accuracy
(best over the lr grid; `pipelines.capacity_search`). The claim: capacity grows linearly in the
parameter count P (d^2, or 2md) up to a log factor.

Validation: a memorisation claim has no held-out split; a probe is judged on its own training
set (all N associations), and the lr grid is read there too: capacity is the best over settings
by definition.

Rule, fixed before any run (from theory): the least-squares slope b of log(capacity) on log(P)
over the d grid must lie in SLOPE_RANGE = [0.70, 1.10] for every MLP ratio. Exactly linear gives
b = 1; the paper's law P = c N ln N gives b = ln N / (ln N + 1), about 0.8-0.9 at these sizes; a
capacity growing only like d (sqrt P) gives 0.5, which the lower bound rejects; 1.10 allows
bisection noise (tolerance 5%) above the linear law, never a super-linear one.

Seeds: one verdict per seed (its own capacities) and one on the seed-mean capacities, combined by
`combine_seeds` (2/3 of the seeds must share the mean's state). A capacity that is only a bound
(at the bracket top, below the bracket bottom, or decided by a probe that ended on its step
budget while its accuracy still rose) makes that seed's, and the mean's, verdict inconclusive:
a starved search never fails the claim.

Quick budgets: the linear memory gets the reference's 4096 steps (at 1500, the deciding probes of
4 of 15 searches were still rising and reached 99% within 1600-1860 steps: the budget, not the
memory, set the capacity); the MLP memory keeps 1500 (the reference allows 32768, hours on a
CPU), so its quick verdict may be inconclusive, which says exactly that. Both train the seeds of
a width as one stacked ensemble (the same probes, batched).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from factlab.analysis.fits import loglog_slope
from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.pipelines.capacity_search import capacity_rows
from factlab.report.factual_recall import capacity_figures
from factlab.train.loop import TrainConfig

SLOPE_RANGE = (0.70, 1.10)


@dataclasses.dataclass
class CapacityConfig(ExperimentConfig):
    """Grid of memory sizes, lr grid and bisection tolerance; seeds come from `seeds`."""

    d: tuple[int, ...] = (8, 11, 16, 22, 32)
    width_ratio: tuple[float, ...] = (2.0,)  # m = int(c * d); MLP memory only
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
        require(all(lr > 0 for lr in self.lr_grid), "lr_grid", "every lr must be > 0")
        require(0 < self.threshold <= 1, "threshold", "must be in (0, 1]")
        require(self.tolerance > 1, "tolerance", f"must be > 1, got {self.tolerance}")
        require(self.n_bins >= 2, "n_bins", "must be >= 2")


def make_run(kind: Literal["linear", "mlp"]) -> Callable[[CapacityConfig, RunContext], Verdict]:
    """The run function of capacity-linear or capacity-mlp."""

    def run(cfg: CapacityConfig, ctx: RunContext) -> Verdict:
        rows = capacity_rows(kind, cfg, ctx.device, ctx.log, ctx.show_progress)
        return judge(kind, rows)

    return run


def _label(kind: str, ratio: float) -> str:
    return "linear" if kind == "linear" else f"c={ratio:g}"


def slope_verdict(kind: str, rows: list[dict[str, Any]]) -> Verdict:
    """The slope rule on one set of rows (one seed's, or the seed means)."""
    slopes: dict[str, float] = {}
    metrics: dict[str, Any] = {"capacity": {}, "params_per_nlogn": {}}
    for ratio in sorted({r["ratio"] for r in rows}):
        sel = sorted((r for r in rows if r["ratio"] == ratio), key=lambda r: r["d"])
        params = np.array([r["params"] for r in sel], float)
        caps = np.array([r["capacity"] for r in sel], float)
        label = _label(kind, ratio)
        metrics["capacity"][label] = {str(r["d"]): float(r["capacity"]) for r in sel}
        if len(sel) >= 2:
            slopes[label] = loglog_slope(params, caps)[0]
        # P / (N ln N): the constant of the paper's guide line, per size
        metrics["params_per_nlogn"][label] = float(np.median(
            params / (caps * np.log(np.maximum(caps, 2)))))
    metrics["slope"] = slopes
    lo, hi = SLOPE_RANGE
    fitted = ", ".join(f"{k}: {v:.2f}" for k, v in slopes.items()) or "none"
    evidence = f"slope {fitted} (needs {lo:.2f}..{hi:.2f})"
    censored = [r for r in rows if r["censored"]]
    if censored:
        r = censored[0]
        return inconclusive(f"{r['censored']} at d={r['d']}"
                            + (f" (and {len(censored) - 1} more)" if len(censored) > 1 else ""),
                            evidence, metrics)
    if not slopes:
        return inconclusive("needs at least two widths d to fit a slope", evidence, metrics)
    return decide(all(lo <= s <= hi for s in slopes.values()), evidence, metrics)


def mean_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell with the seed-mean capacity (censored when any seed's is)."""
    out = []
    for key in sorted({(r["ratio"], r["d"]) for r in rows}):
        sel = [r for r in rows if (r["ratio"], r["d"]) == key]
        reasons = [r["censored"] for r in sel if r["censored"]]
        out.append({**sel[0], "seed": None, "capacity": float(np.mean([r["capacity"]
                                                                       for r in sel])),
                    "censored": reasons[0] if reasons else ""})
    return out


def judge(kind: str, rows: list[dict[str, Any]]) -> Verdict:
    """The verdict over seeds from the capacity rows (one per cell and seed)."""
    seeds = sorted({r["seed"] for r in rows})
    per_seed = [slope_verdict(kind, [r for r in rows if r["seed"] == s]) for s in seeds]
    mean = slope_verdict(kind, mean_rows(rows))
    lo, hi = SLOPE_RANGE
    parts = []
    for label, slope in mean.metrics["slope"].items():
        seed_slopes = [v.metrics["slope"].get(label, float("nan")) for v in per_seed]
        parts.append(f"{label}: {slope:.2f} on the seed mean, per seed "
                     f"{spread(seed_slopes, '.2f')}")
    const = ", ".join(f"{k}: {v:.2f}" for k, v in mean.metrics["params_per_nlogn"].items())
    evidence = (f"slope of log capacity vs log params {'; '.join(parts) or 'not fitted'} "
                f"(linear-up-to-log needs {lo:.2f}..{hi:.2f}); median P/(N ln N) = {const}")
    metrics = {"slope_range": list(SLOPE_RANGE),
               "slope_per_seed": {str(s): v.metrics["slope"] for s, v in zip(seeds, per_seed)},
               "censored": sum(bool(r["censored"]) for r in rows)}
    return combine_seeds(mean, per_seed, evidence, metrics)


_PAPER_COMMON = {"seeds": "0,1,11,111,42", "tolerance": 1.01,
                 "lr_grid": "0.01,0.1,1,10,1000", "train.eval_every": 32}

CAPACITY_LINEAR = Experiment(
    name="capacity-linear",
    claim="A linear associative memory W in R^{d x d} stores a number of associations "
          "linear in its d^2 parameters, up to a log factor.",
    config=CapacityConfig,
    run=make_run("linear"),
    figures=functools.partial(capacity_figures, kind="linear", slope_range=SLOPE_RANGE),
    presets={"quick": {"train.lr": 1.0, "train.steps": 4096, "ensemble": True},
             "paper": {**_PAPER_COMMON, "d": "8,11,16,22,32,45,64,90,128,181,256",
                       "train.steps": 4096}},
)

CAPACITY_MLP = Experiment(
    name="capacity-mlp",
    claim="A ReLU MLP memory of width m stores a number of associations linear in its 2md "
          "parameters, up to a log factor.",
    config=CapacityConfig,
    run=make_run("mlp"),
    figures=functools.partial(capacity_figures, kind="mlp", slope_range=SLOPE_RANGE),
    presets={"quick": {"train.lr": 0.03, "ensemble": True},
             "paper": {**_PAPER_COMMON, "d": "8,11,16,22,32,45,64,90",
                       "width_ratio": "1,2,4,8", "train.steps": 32768}},
)
