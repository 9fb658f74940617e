"""IC-recall from zero against small random initialisation of W_QK (arXiv 2605.27774, our
reconstruction): does fine-tuning reach the same fixed point?

Each seed runs `ic-recall`'s protocol twice on the same splits and batch order, once with
W_QK = 0 (uniform attention at the start) and once with W_QK ~ N(0, init_std^2); only the
initialisation differs. The fixed point is read through the pattern statistics of the test
prompts: alpha_q (mass on the query subject), the within-pair asymmetry and the pair spread.

Rule, fixed before running (docs/ic_recall.md says what was known when it was written):
* inconclusive if either arm ended on its budget while still improving;
* every statistic lives on [0, 1], where the pattern claim's hypotheses sit at the ends
  (null 0, rival patterns 1); the arms agree on a statistic when the seed mean of the paired
  difference (small - zero) is at most MARGIN = 0.1, a tenth of that distance;
* holds when they agree on all three and the pattern claim's own reading of the seed means
  (asym and spread under their null-derived limits, as `ic-recall` reads them) is the same
  for both arms;
* fails when some statistic differs by more than MARGIN with every seed's difference of
  the same sign, or the qualitative reading differs;
* inconclusive otherwise (a mean beyond MARGIN that the seeds do not agree on).
Accuracy is reported beside it, not judged: it is a consequence of the pattern.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from factlab.analysis.verdicts import Verdict, decide, inconclusive, spread
from factlab.experiments.base import Experiment, RunContext
from factlab.experiments.ic_recall import (
    IC_RECALL,
    ICRecallConfig,
    measure_pattern,
    pattern_limits,
    pool_seeds,
)
from factlab.report.ic_recall import init_figures

MARGIN = 0.1
STATS = ("alpha_q", "asym", "spread")


def _pairwise(rec: dict[str, Any]) -> bool:
    """The pattern claim's reading of one record: both statistics under their limits."""
    lim_a, lim_s = pattern_limits(rec)
    return rec["asym"] <= lim_a and rec["spread"] <= lim_s


def init_verdict(zero: list[dict[str, Any]], small: list[dict[str, Any]]) -> Verdict:
    """The module docstring's rule on paired per-seed records of the two arms."""
    diffs = {s: np.array([b[s] - a[s] for a, b in zip(zero, small)]) for s in STATS}
    mean = {s: float(diffs[s].mean()) for s in STATS}
    reading = {"zero": _pairwise(pool_seeds(zero)), "small": _pairwise(pool_seeds(small))}
    evidence = "; ".join(
        f"{s} zero {spread([r[s] for r in zero])}, small {spread([r[s] for r in small])}, "
        f"paired difference {mean[s]:+.3f} (agree within {MARGIN})" for s in STATS)
    evidence += (f"; acc all zero {spread([r['acc_all'] for r in zero], '.4f')}, small "
                 f"{spread([r['acc_all'] for r in small], '.4f')} (not judged)")
    metrics = {"paired_difference": mean, "margin": MARGIN, "pairwise": reading,
               "per_seed": {"zero": zero, "small": small}}
    if any(r["still_improving"] for r in zero + small):
        return inconclusive("budget exhausted while still improving", evidence, metrics)
    if reading["zero"] != reading["small"]:
        return decide(False, f"the pattern claim reads differently: {evidence}", metrics)
    far = [s for s in STATS if abs(mean[s]) > MARGIN]
    if not far:
        return decide(True, evidence, metrics)
    firm = [s for s in far if np.all(np.sign(diffs[s]) == np.sign(mean[s]))]
    if firm:
        return decide(False, f"{', '.join(firm)} differ beyond {MARGIN}: {evidence}", metrics)
    return inconclusive(f"{', '.join(far)} beyond {MARGIN} on the mean, but the seeds' "
                        "differences disagree in sign", evidence, metrics)


def run_init(cfg: ICRecallConfig, ctx: RunContext) -> Verdict:
    """Both arms on the same seeds and splits, then the rule."""
    arms = {}
    for init in ("zero", "small"):
        sub = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init=init))
        arms[init], _ = measure_pattern(sub, ctx)
        for r in arms[init]:
            ctx.log(0, "init", init=init, **r)
    return init_verdict(arms["zero"], arms["small"])


IC_RECALL_INIT = Experiment(
    name="ic-recall-init",
    claim="Attention-only IC-recall fine-tuning reaches the same fixed point from zero and "
          "from small random initialisation of W_QK: the same attention pattern, each "
          "statistic within 0.1.",
    config=ICRecallConfig,
    run=run_init,
    figures=init_figures,
    presets={"quick": {**IC_RECALL.presets["quick"], "n_heatmap": 0},
             "paper": {**IC_RECALL.presets["paper"], "n_heatmap": 0}},
)

__all__ = ["IC_RECALL_INIT", "MARGIN", "init_verdict"]
