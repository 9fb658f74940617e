"""Sequential learning and the hallucination plateau (arXiv 2412.06538 Fig. 5): recall-sequential.

A one-hot, linear-attention model learns the structured table a*(s, r) = floor(s/2) + D r with
SGD (`train.recipes.train_sequential`, every seed of `cfg.seeds` stacked). The claim: it learns
the relation before the subject, so it passes a plateau where the relation-only loss is near 0
while the total loss sits near log D (a uniform guess inside the right answer block: a
confident-looking "hallucination"), before everything converges.

Validation: none is read. There is no early stop, checkpoint choice or lr grid (the paper's
SGD lr 0.1 and 8192 steps); the verdict reads the logged curve on each seed's fixed test prompts.

Rule, fixed before any run, on the test-loss curve (from theory and chance):
- plateau: evaluations with relation-only loss <= PLATEAU_REL_LOSS = 0.15 nats (>= 86% of the
  mass on the right block; about a tenth of chance's log R = 1.39 at R = 4) and total loss within
  PLATEAU_BAND = [0.75, 1.25] x log D (a uniform guess inside the block has loss exactly log D
  plus the relation-only loss). The longest run of such consecutive evaluations must last
  >= PLATEAU_MIN_FRACTION = 5% of training: a model descending straight from log RD to 0 crosses
  the band in a transient, and the paper's plateau spans ~40% of training.
- converged: the final total loss <= CONVERGED_LOSS_FRACTION = 0.1 x log D.
holds: converged after a long-enough plateau; fails: converged without one (relation and
subject learned together); inconclusive: not converged within the budget (the order cannot be
told from a run that has not finished learning).

Seeds: one verdict per seed and one on the seed-mean curve (losses averaged per step), combined
by `combine_seeds`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from factlab.analysis.search import longest_run
from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.report.factual_recall import sequential_figures
from factlab.tasks.factual_recall import RecallTaskConfig
from factlab.train.loop import TrainConfig
from factlab.train.recipes import train_sequential

PLATEAU_REL_LOSS = 0.15  # nats
PLATEAU_BAND = (0.75, 1.25)  # total loss within this factor of log D
PLATEAU_MIN_FRACTION = 0.05  # of all training steps
CONVERGED_LOSS_FRACTION = 0.1  # final total loss below 0.1 log D
# the rule's constants, for the figures that draw them
SEQUENTIAL_RULE = SimpleNamespace(
    PLATEAU_REL_LOSS=PLATEAU_REL_LOSS, PLATEAU_BAND=PLATEAU_BAND,
    PLATEAU_MIN_FRACTION=PLATEAU_MIN_FRACTION, CONVERGED_LOSS_FRACTION=CONVERGED_LOSS_FRACTION)
CURVE_KEYS = ("loss", "acc", "loss_relation", "acc_relation", "loss_subject", "acc_subject")


@dataclasses.dataclass
class SequentialConfig(ExperimentConfig):
    """Task, model init, optimisation and test-set size of the sequential-learning run."""

    task: RecallTaskConfig = dataclasses.field(default_factory=lambda: RecallTaskConfig(
        n_subjects=16, n_relations=4, n_answers=8, n_noise=20, seq_len=32,
        kb_kind="structured"))
    init: float = 1e-5  # A = V = init * 1 at the start
    n_test: int = 4096  # fresh test prompts per seed, fixed for the run
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="sgd", lr=0.1, steps=8192, batch_size=1024, eval_every=64))

    def check(self) -> None:
        super().check()
        require(self.n_test >= 1, "n_test", "must be >= 1")
        require(self.init > 0, "init", "must be > 0")


def run(cfg: SequentialConfig, ctx: RunContext) -> Verdict:
    """Train every seed (stacked); log its test curve; judge each seed and the seed mean."""
    curves: dict[int, list[dict[str, Any]]] = {s: [] for s in cfg.seeds}

    def on_eval(member: int, step: int, metrics: dict[str, float]) -> None:
        seed = cfg.seeds[member]
        curves[seed].append({"step": step, **{k: metrics[k] for k in CURVE_KEYS}})
        ctx.log(step, "test", seed=seed, **metrics)

    stack, _ = train_sequential(cfg.task, cfg.init, cfg.train, cfg.seeds, cfg.n_test,
                                ctx.device, on_eval)
    for i, seed in enumerate(cfg.seeds):
        ctx.store.save_checkpoint(f"model_seed{seed}", stack.member_state(i))
    verdict = judge(curves, math.log(cfg.task.n_answers), cfg.train.steps)
    for seed, m in [*verdict.metrics["per_seed"].items(), (None, verdict.metrics)]:
        ctx.log(0, "plateau", seed=None if seed is None else int(seed),
                start=m["plateau_start"], end=m["plateau_end"])
    return verdict


def find_plateau(records: list[dict[str, Any]], log_d: float) -> tuple[int, int] | None:
    """(first, last) step of the longest run of evaluations in the plateau, or None."""
    lo, hi = PLATEAU_BAND
    inside = [r["loss_relation"] <= PLATEAU_REL_LOSS and lo * log_d <= r["loss"] <= hi * log_d
              for r in records]
    return longest_run([r["step"] for r in records], inside)


def judge_curve(records: list[dict[str, Any]], log_d: float, total_steps: int) -> Verdict:
    """The rule on one test curve (one seed's, or the seed mean)."""
    plateau = find_plateau(records, log_d)
    final = records[-1]
    length = 0 if plateau is None else plateau[1] - plateau[0]
    long_enough = length >= PLATEAU_MIN_FRACTION * total_steps
    converged = final["loss"] <= CONVERGED_LOSS_FRACTION * log_d
    metrics = {"plateau_start": plateau and plateau[0], "plateau_end": plateau and plateau[1],
               "plateau_steps": length, "final_loss": final["loss"], "final_acc": final["acc"],
               "final_loss_relation": final["loss_relation"],
               "final_loss_subject": final["loss_subject"], "steps": final["step"]}
    where = "no plateau" if plateau is None else f"plateau steps {plateau[0]}-{plateau[1]}"
    evidence = f"{where} ({length} steps), final loss {final['loss']:.3f}"
    if not converged:
        return inconclusive(f"not converged within {total_steps} steps (final loss "
                            f"{final['loss']:.3f} > {CONVERGED_LOSS_FRACTION * log_d:.2f})",
                            evidence, metrics)
    return decide(long_enough, evidence, metrics)


def mean_curve(curves: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The seed mean of every curve key at each step all seeds logged."""
    steps = sorted(set.intersection(*({r["step"] for r in c} for c in curves.values())))
    by = {s: {r["step"]: r for r in c} for s, c in curves.items()}
    return [{"step": t, **{k: float(np.mean([by[s][t][k] for s in by])) for k in CURVE_KEYS}}
            for t in steps]


def judge(curves: dict[int, list[dict[str, Any]]], log_d: float, total_steps: int) -> Verdict:
    """The verdict over seeds from each seed's test curve."""
    per_seed = {s: judge_curve(c, log_d, total_steps) for s, c in curves.items()}
    mean = judge_curve(mean_curve(curves), log_d, total_steps)
    starts = [v.metrics["plateau_start"] or math.nan for v in per_seed.values()]
    ends = [v.metrics["plateau_end"] or math.nan for v in per_seed.values()]
    evidence = (f"seed mean: {mean.evidence}; per seed plateau start {spread(starts, '.0f')}, "
                f"end {spread(ends, '.0f')} (needs >= {PLATEAU_MIN_FRACTION:.0%} of "
                f"{total_steps} steps with relation-only loss <= {PLATEAU_REL_LOSS} and total "
                f"loss in {PLATEAU_BAND} x log D = {log_d:.2f}; converged needs final loss <= "
                f"{CONVERGED_LOSS_FRACTION * log_d:.2f})")
    metrics = {"log_D": log_d,
               "per_seed": {str(s): {k: v.metrics[k] for k in ("plateau_start", "plateau_end",
                                                              "final_loss", "final_acc")}
                            for s, v in per_seed.items()}}
    return combine_seeds(mean, list(per_seed.values()), evidence, metrics)


RECALL_SEQUENTIAL = Experiment(
    name="recall-sequential",
    claim="Trained by SGD, the one-layer linear-attention model learns the relation before the "
          "subject: it passes through a hallucination plateau (relation-only loss ~ 0, total "
          "loss ~ log D) before converging.",
    config=SequentialConfig,
    run=run,
    figures=functools.partial(sequential_figures, rule=SEQUENTIAL_RULE),
    presets={"paper": {"n_test": 65536}},
)
