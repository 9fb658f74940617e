"""Attention/MLP trade-off on factual recall (arXiv 2412.06538 Fig. 4 right): recall-tradeoff.

Train the one-layer model on Task A for every (seed, heads H, MLP width m) cell of a grid
(`pipelines.factual_recall.tradeoff_grid`, through the shared launchers) and record each cell's
test accuracy. The claim: attention and MLP parameters substitute for each other, so the
success frontier runs diagonally: more heads need less MLP width.

Validation: Task A memorises a fixed knowledge base, so validation and test are independent
draws of fresh prompts over the same facts. Early stopping and the best checkpoint read the
validation prompts; the verdict reads test accuracy at that checkpoint.

Rule, fixed before any run, on the frontier m_min(H) = the smallest grid width whose accuracy
reaches THRESHOLD = 0.99 (the paper's success criterion) at H heads:
- holds when its MLP parameters fall as attention parameters grow, Spearman rank correlation
  <= MAX_SPEARMAN = -0.8 (with 4 frontier points, -0.8 is one adjacent swap from a perfectly
  descending order; a random order passes with chance 1/6 per seed, and 2 of 3 seeds must), and
  it moves by >= MIN_SPAN = 2x in MLP parameters (at least one step of the doubling width
  grid; an axis-aligned frontier gives exactly 1x);
- fails otherwise (a fixed width needed whatever H, or heads not helping);
- inconclusive when the grid cannot place the frontier: the largest cell fails (frontier above
  the grid), every H succeeds at the smallest width (below it), fewer than MIN_FRONTIER = 3
  heads reach the threshold (no direction to read), or a failing cell that could move the
  frontier ended on its step budget while validation accuracy still rose (starved).

Seeds: one verdict per seed's grid and one on the seed-mean accuracy grid, combined by
`combine_seeds`.
"""

from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

from factlab.analysis.search import frontier
from factlab.analysis.stats import spearman
from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.models.one_layer import OneLayerConfig
from factlab.pipelines.factual_recall import tradeoff_grid
from factlab.report.factual_recall import tradeoff_figures
from factlab.tasks.factual_recall import RecallTaskConfig
from factlab.train.loop import TrainConfig

THRESHOLD = 0.99
MIN_FRONTIER = 3
MAX_SPEARMAN = -0.8
MIN_SPAN = 2.0
# the rule's constants, for the figures that draw them
TRADEOFF_RULE = SimpleNamespace(
    MIN_FRONTIER=MIN_FRONTIER, MAX_SPEARMAN=MAX_SPEARMAN, MIN_SPAN=MIN_SPAN)


@dataclasses.dataclass
class TradeoffConfig(ExperimentConfig):
    """Task A, the fixed model sizes, the (heads x width) grid and training."""

    task: RecallTaskConfig = dataclasses.field(default_factory=lambda: RecallTaskConfig(
        n_subjects=16, n_relations=16, n_answers=8, n_noise=32, seq_len=8))
    model: OneLayerConfig = dataclasses.field(default_factory=lambda: OneLayerConfig(
        d_model=32, d_head=8))
    heads: tuple[int, ...] = (1, 2, 4, 8)
    widths: tuple[int, ...] = (4, 16, 32, 64, 128)
    n_test: int = 1024  # test prompts; as many validation prompts, drawn independently
    workers: int = 0  # cells train in this many single-thread processes; 0 = one per core
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=1e-2, steps=2000, batch_size=512, eval_every=100,
        target_acc=THRESHOLD))

    def check(self) -> None:
        super().check()
        require(len(self.heads) >= 1 and min(self.heads) >= 1, "heads", "every H must be >= 1")
        require(len(self.widths) >= 1 and min(self.widths) >= 0, "widths",
                "every width must be >= 0")
        require(self.n_test >= 1, "n_test", "must be >= 1")
        require(self.workers >= 0, "workers", "must be >= 0 (0 = one per core)")


def run(cfg: TradeoffConfig, ctx: RunContext) -> Verdict:
    """Train every (seed, heads, width) cell and judge the frontier over seeds."""
    rows = tradeoff_grid(cfg.task, cfg.model, cfg.train, cfg.heads, cfg.widths, cfg.seeds,
                         cfg.n_test, ctx.device, cfg.workers, ctx.show_progress)
    for i, row in enumerate(rows):
        ctx.log(i, "grid", **row)
    return judge(rows, cfg.model.d_model, cfg.model.d_head)


def judge_grid(acc: dict[tuple[int, int], float], starved: set[tuple[int, int]], d: int,
               d_head: int) -> Verdict:
    """The rule on one accuracy grid {(H, m): acc} (one seed's, or the seed mean)."""
    front = frontier(acc, THRESHOLD)
    heads = sorted({h for h, _ in acc})
    widths = sorted({m for _, m in acc})
    x = np.array([d * d_head * h for h in front], float)
    y = np.array([d * m for m in front.values()], float)
    rho = spearman(x, y) if len(front) >= 2 else float("nan")
    rho = 0.0 if np.isnan(rho) else rho  # a constant side is no trend at all
    span = float(y.max() / max(y.min(), 1.0)) if len(front) else 0.0
    pts = ", ".join(f"H={h}:m={m}" for h, m in front.items()) or "none"
    evidence = f"frontier {pts}; Spearman {rho:.2f}, MLP span {span:.1f}x"
    metrics = {"frontier": {str(h): m for h, m in front.items()}, "spearman": rho,
               "mlp_span": span, "n_success": int(sum(a >= THRESHOLD for a in acc.values())),
               "n_cells": len(acc)}
    movers = sorted((h, m) for (h, m) in starved if acc[h, m] < THRESHOLD
                    and m < front.get(h, widths[-1] + 1))
    if acc[heads[-1], widths[-1]] < THRESHOLD:
        reason = f"even the largest cell H={heads[-1]}, m={widths[-1]} is below {THRESHOLD}"
        return inconclusive(reason + ": the frontier lies above the grid", evidence, metrics)
    if movers:
        h, m = movers[0]
        return inconclusive(f"cell H={h}, m={m} ended on its step budget while validation "
                            f"accuracy still rose (it could move the frontier)", evidence, metrics)
    if len(front) == len(heads) and all(m == widths[0] for m in front.values()):
        return inconclusive("every H succeeds at the smallest width: the frontier lies below "
                            "the grid", evidence, metrics)
    if len(front) < MIN_FRONTIER:
        return inconclusive(f"only {len(front)} head counts reach {THRESHOLD} (needs >= "
                            f"{MIN_FRONTIER} to read a direction)", evidence, metrics)
    return decide(rho <= MAX_SPEARMAN and span >= MIN_SPAN, evidence, metrics)


def judge(rows: list[dict[str, Any]], d: int, d_head: int) -> Verdict:
    """The verdict over seeds from the grid rows (one per seed and cell)."""
    seeds = sorted({r["seed"] for r in rows})
    per_seed = []
    for s in seeds:
        sel = [r for r in rows if r["seed"] == s]
        per_seed.append(judge_grid({(r["heads"], r["width"]): r["acc"] for r in sel},
                                   {(r["heads"], r["width"]) for r in sel if r["starved"]},
                                   d, d_head))
    cells = sorted({(r["heads"], r["width"]) for r in rows})
    mean_acc = {c: float(np.mean([r["acc"] for r in rows if (r["heads"], r["width"]) == c]))
                for c in cells}
    mean = judge_grid(mean_acc, {(r["heads"], r["width"]) for r in rows if r["starved"]},
                      d, d_head)
    evidence = (f"seed-mean grid: {mean.evidence}; per seed Spearman "
                f"{spread([v.metrics['spearman'] for v in per_seed], '.2f')}, span "
                f"{spread([v.metrics['mlp_span'] for v in per_seed], '.1f')} (smallest width "
                f"reaching {THRESHOLD}; needs Spearman <= {MAX_SPEARMAN}, span >= {MIN_SPAN}x, "
                f">= {MIN_FRONTIER} points)")
    metrics = {"frontier_per_seed": {str(s): v.metrics["frontier"]
                                     for s, v in zip(seeds, per_seed)},
               "n_starved": sum(bool(r["starved"]) for r in rows),
               "spearman_per_seed": [v.metrics["spearman"] for v in per_seed],
               "span_per_seed": [v.metrics["mlp_span"] for v in per_seed]}
    return combine_seeds(mean, per_seed, evidence, metrics)


RECALL_TRADEOFF = Experiment(
    name="recall-tradeoff",
    claim="On factual recall, attention and MLP parameters substitute for each other: the "
          "success frontier over (heads x MLP width) runs diagonally, not along one axis.",
    config=TradeoffConfig,
    run=run,
    figures=functools.partial(tradeoff_figures, threshold=THRESHOLD, rule=TRADEOFF_RULE),
    presets={"paper": {
        "task.n_subjects": 32, "task.n_relations": 32, "task.n_answers": 8,
        "task.n_noise": 64, "task.seq_len": 32, "model.d_model": 32, "model.d_head": 8,
        "heads": "1,2,4,6,8,10,12,14,16,20,24,28,32",
        "widths": "1,8,16,24,32,40,48,56,64,80,96,112,128",
        "train.steps": 16384, "train.batch_size": 1024, "train.eval_every": 128}},
)
