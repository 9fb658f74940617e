"""IC-recall controls registered as experiments (arXiv 2605.27774, our reconstruction).

* ``ic-recall-m2``: ``ic-recall`` with the random-feature memory M2 (W_1 rows uniform on the
  sphere, W_2 fitted) in place of the constructed M1; the same claim and rule as
  ``ic-recall`` (`factlab.experiments.ic_recall`), testing that the pattern and the accuracy
  are not an artefact of M1's hand-built units.
* ``ic-recall-shared-pool``: every a*(s, r) drawn from one pool of all R*D answers, so a
  context answer no longer reveals the relation; a one-layer model reading a weighted bag of
  tokens would need (subject, answer) conjunctions to infer r. Expected to FAIL the pattern
  claim's accuracy; the control's own claim is that it stays below target.

Rule, fixed before running (per seed, then `combine_seeds`; the mean pools the hit counts):
the 95% Wilson interval of the hits over all triplets (held-out subjects included). Upper end
< ACC_TARGET: the control holds (accuracy stays below target); lower end >= ACC_TARGET: it
fails (the shared pool was solved after all); otherwise inconclusive (too few trials). A run
that ended on its budget while still improving cannot show "stays below": inconclusive.
"""

from __future__ import annotations

import functools
from typing import Any

from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.experiments.base import Experiment, RunContext
from factlab.experiments.ic_recall import (
    ACC_TARGET,
    IC_RECALL,
    IC_RECALL_RULE,
    ICRecallConfig,
    measure_pattern,
    pool_seeds,
    run_pattern,
)
from factlab.probes.ic_recall import wilson_interval
from factlab.report.ic_recall import pattern_figures


def below_target_verdict(rec: dict[str, Any]) -> Verdict:
    """The module docstring's rule on one record (a seed, or the pooled seed mean)."""
    hits = rec["hits_seen"] + rec["hits_heldout"]
    trials = rec["n_seen"] + rec["n_heldout"]
    lo, hi = wilson_interval(hits, trials)
    evidence = (f"acc all {hits / max(trials, 1):.4f} [{lo:.4f}, {hi:.4f}] (95% Wilson; the "
                f"control holds below {ACC_TARGET})")
    metrics = {"acc_interval": [lo, hi]}
    if lo >= ACC_TARGET:
        return decide(False, evidence, metrics)
    if rec["still_improving"]:
        return inconclusive("budget exhausted while validation loss was still improving",
                            evidence, metrics)
    if hi < ACC_TARGET:
        return decide(True, evidence, metrics)
    return inconclusive("accuracy interval straddles the target: too few trials", evidence,
                        metrics)


def shared_pool_summary(records: list[dict[str, Any]], info: dict[str, Any]) -> Verdict:
    """Per-seed verdicts, the pooled one, and `combine_seeds`."""
    per_seed = [below_target_verdict(r) for r in records]
    mean = below_target_verdict(pool_seeds(records))
    evidence = (f"{mean.evidence}; per seed {spread([r['acc_all'] for r in records], '.4f')}; "
                f"memory oracle {info.get('oracle_acc', float('nan')):.4f}")
    return combine_seeds(mean, per_seed, evidence, {"per_seed": records, **info})


def run_shared_pool(cfg: ICRecallConfig, ctx: RunContext) -> Verdict:
    """Fine-tune as `ic-recall` does, on the shared-pool knowledge base."""
    return shared_pool_summary(*measure_pattern(cfg, ctx))


IC_RECALL_SHARED_POOL = Experiment(
    name="ic-recall-shared-pool",
    claim="Control: with one shared answer pool (an answer no longer reveals the relation), "
          "attention-only fine-tuning of the frozen-memory model stays below 99% IC-recall "
          "accuracy.",
    config=ICRecallConfig,
    run=run_shared_pool,
    figures=functools.partial(pattern_figures, rule=IC_RECALL_RULE),
    # quick: ic-recall's sizes with a 6000-step budget; at ic-recall's 1500 two of three seeds
    # were still improving (inconclusive); at 6000 they stop on patience at 800-3800 steps
    presets={"quick": {**IC_RECALL.presets["quick"], "task.answer_sets": "shared",
                       "protocol.min_steps": 6000},
             "paper": {**IC_RECALL.presets["paper"], "task.answer_sets": "shared"}},
)

IC_RECALL_M2 = Experiment(
    name="ic-recall-m2",
    claim=IC_RECALL.claim.replace("frozen constructed memory", "frozen random-feature memory"),
    config=ICRecallConfig,
    run=run_pattern,
    figures=functools.partial(pattern_figures, rule=IC_RECALL_RULE),
    presets={"quick": {**IC_RECALL.presets["quick"], "memory.kind": "random_features"},
             "paper": {**IC_RECALL.presets["paper"], "memory.kind": "random_features"}},
)

__all__ = ["IC_RECALL_M2", "IC_RECALL_SHARED_POOL", "below_target_verdict",
           "shared_pool_summary"]
