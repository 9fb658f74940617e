"""Knowledge acquisition and extraction (arXiv 2508.00901): the single run and acquisition.

Shared by the whole family (the trend, LoRA and training modules import it): the thresholds
below, each derived before any run from chance or from the definition it encodes, the quick
presets and the trend rule. Every verdict is computed per seed from that seed's records and on
the seed-mean records, and combined with `combine_seeds` (`analysis.seeds.over_seeds`).
Learning rates and the best fine-tuning checkpoint are chosen on the validation subjects
P_val; every verdict reads the test subjects P_test only.

extraction: holds when the fine-tuned model answers held-out facts, test Q&A accuracy >=
EXTRACT_MIN; fails below it. Inconclusive when the prerequisite is missing (stored accuracy <
STORED_MIN when pre-training ended) or when the accuracy is below the bar while P_val was
still improving at the last fine-tuning step (a starved run).

extraction-acquisition: after pre-training, (a) attention at the answer slot is structured:
the mass on s and T together >= 1/2 (most of the attention on the two informative tokens;
the uniform null is 2/L), and (b) template images share a relation direction: the mean
within-relation cosine of W_OV φ(T_{r,j}) minus the across-relation one exceeds the 95%
quantile of the same gap under random relabelling of the templates (a permutation null
computed in the run), and so does each relation's own gap (its templates among themselves
minus against all others) against its own relabelling null at q = 1 - 0.05/|R| (Bonferroni:
every relation passing by chance alone has probability < 5%). "A direction per relation" is
judged per relation: every one must pass. Holds when (a) and (b) hold; fails when either
fails; inconclusive when the facts are not stored (< STORED_MIN).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from factlab.analysis.seeds import over_seeds
from factlab.analysis.stats import spearman
from factlab.analysis.verdicts import Verdict, decide, inconclusive
from factlab.experiments.base import Experiment, RunContext
from factlab.pipelines.extraction import STORED_MIN, ExtractionConfig, run_pipeline
from factlab.pipelines.extraction_grid import scalars, sweep
from factlab.report.extraction import figures_acquisition, figures_extraction

EXTRACT_MIN = 0.5
"""Held-out Q&A accuracy that counts as "extracts": a majority of never-fine-tuned facts
answered, against chance 1/D (<= 0.125 at our sizes) inside the right answer block."""

RHO_MIN = 0.8
"""Spearman correlation with the knob that counts as a monotone trend. With 4 grid points one
adjacent swap still gives 0.8; with 3 points it demands a strict order."""

MIN_EFFECT = 0.05
"""Smallest end-to-end change of accuracy along a sweep that counts as a trend: five points,
above the binomial noise of a test set of >= 800 queries (sd <= 0.018)."""

NEAR_CHANCE_FACTOR = 2.0
"""Failure regime: held-out Q&A accuracy <= 2/D (twice the within-block chance) is "near
chance"; anything above means the format reaches the stored facts."""

ATTENTION_MAJORITY = 0.5
"""Structured attention: the two informative tokens get most of the attention."""

NULL_QUANTILE = 0.95
# the rule's constants, for the figures that draw them
EXTRACTION_RULE = SimpleNamespace(
    EXTRACT_MIN=EXTRACT_MIN, RHO_MIN=RHO_MIN, MIN_EFFECT=MIN_EFFECT,
    NEAR_CHANCE_FACTOR=NEAR_CHANCE_FACTOR, ATTENTION_MAJORITY=ATTENTION_MAJORITY,
    NULL_QUANTILE=NULL_QUANTILE)
"""A probe beats its permutation null when it exceeds the null's 95% quantile (the
pipeline's `rel_gap_null` is that quantile)."""

# quick sizes: the short layout (L = 8, 16 noise tokens) that pre-trains in seconds
QUICK = {
    "corpus.n_subjects": 200, "corpus.n_relations": 4, "corpus.n_templates": 4,
    "corpus.n_answers": 8, "corpus.multiplicity": 2, "corpus.seq_len": 8, "corpus.n_noise": 16,
    "corpus.n_finetune": 1000, "model.d_model": 64, "model.d_head": 64, "model.d_mlp": 256,
    "pretrain.lr": 3e-3, "pretrain.steps": 4000, "pretrain.eval_every": 500,
    "finetune.steps": 300, "finetune.eval_every": 30,
    # the fine-tuning grids, centred where a 300-step budget needs them (B of LoRA starts at 0)
    "finetune_lrs": "0.0003,0.001,0.003", "lora_lrs": "0.003,0.01,0.03,0.1",
}
PAPER: dict[str, Any] = {}


def cell_logger(ctx: RunContext) -> Callable[[dict[str, Any]], None]:
    """Log each cell record of a grid sweep under split "cell", numbered as it arrives."""
    count = [0]

    def on_row(row: dict[str, Any]) -> None:
        ctx.log(count[0], "cell", **row)
        count[0] += 1
    return on_row


def stored_reason(cells: list[dict[str, Any]]) -> str:
    """The inconclusive reason when some cell's facts were not stored, else ''."""
    low = [c["stored_acc"] for c in cells if c["stored_acc"] < STORED_MIN]
    if not low:
        return ""
    return (f"prerequisite not met: stored acc {min(low):.3f} < {STORED_MIN} when "
            f"pre-training ended")


def trend_part(values: list[float], accs: list[float], sign: int) -> dict[str, Any]:
    """The trend rule: Spearman rho of accuracy with the knob and the signed end-to-end change.

    ok when sign * rho >= RHO_MIN and sign * (acc[last] - acc[first]) >= MIN_EFFECT.
    """
    rho = spearman(np.array(values, float), np.array(accs, float))
    effect = sign * (accs[-1] - accs[0])
    ok = bool(np.isfinite(rho) and sign * rho >= RHO_MIN and effect >= MIN_EFFECT)
    return {"ok": ok, "rho": float(rho), "effect": float(effect)}


def trend_text(name: str, values: list[float], accs: list[float], part: dict[str, Any],
               sign: int) -> str:
    """One evidence clause for a trend part."""
    pairs = ", ".join(f"{v:g}: {a:.3f}" for v, a in zip(values, accs))
    return (f"{name} {{{pairs}}} rho {part['rho']:+.2f} (needs {'>=' if sign > 0 else '<='} "
            f"{sign * RHO_MIN:+.1f}), change {part['effect']:+.3f} (needs >= {MIN_EFFECT})")


# ----------------------------------------------------------------------------- extraction


def judge_extraction(cells: list[dict[str, Any]]) -> Verdict:
    """The `extraction` rule on one record (one seed, or the seed mean)."""
    c = cells[0]
    acc = c["test_acc"]
    ev = (f"stored {c['stored_acc']:.3f}; held-out Q&A {acc:.3f} (needs >= {EXTRACT_MIN}, "
          f"chance {c['chance_block']:.3f} in-block); cov/seen {c['test_acc_cov_seen']:.2f}, "
          f"cov/unseen {c['test_acc_cov_unseen']:.2f}; retained {c['retained_acc']:.3f}; "
          f"lr {c['lr']:g}")
    metrics = {"test_acc": acc, "stored_acc": c["stored_acc"], "retained_acc": c["retained_acc"]}
    if stored_reason(cells):
        return inconclusive(stored_reason(cells), ev, metrics)
    if acc < EXTRACT_MIN and c["still_improving"]:
        return inconclusive("budget: P_val accuracy still improving at the last fine-tuning "
                            "step", ev, metrics)
    return decide(acc >= EXTRACT_MIN, ev, metrics)


def run_extraction(cfg: ExtractionConfig, ctx: RunContext) -> Verdict:
    """One pipeline per seed; the curves of both phases in metrics.jsonl."""
    rows = []
    for seed in cfg.seeds:
        def log(phase: str, step: int, m: dict, seed: int = seed) -> None:
            ctx.log(step, phase, seed=seed, **scalars(m))

        row = {"seed": seed, **scalars(run_pipeline(cfg, seed, ctx.device, log))}
        rows.append(row)
        ctx.log(0, "final", **row)
    return verdict_extraction(rows)


def verdict_extraction(rows: list[dict[str, Any]]) -> Verdict:
    """`extraction` over the seeds of its "final" records."""
    return over_seeds(rows, judge_extraction, (), spread_of=("test_acc",))


# ----------------------------------------------------------------------------- acquisition


def judge_acquisition(cells: list[dict[str, Any]]) -> Verdict:
    """The `extraction-acquisition` rule on one record (one seed, or the seed mean)."""
    c = cells[0]
    mass = c["mass_subject"] + c["mass_template"]
    gap = c["rel_cos_within"] - c["rel_cos_across"]
    gaps, nulls = c.get("rel_gaps", []), c.get("rel_gap_nulls", [])
    own = sum(g > n for g, n in zip(gaps, nulls))  # relations above their own null
    attn_ok = mass >= ATTENTION_MAJORITY
    dir_ok = gap > c["rel_gap_null"] and own == len(gaps)
    ev = (f"stored {c['stored_acc']:.3f}; attention on s+T {mass:.3f} (needs >= "
          f"{ATTENTION_MAJORITY}; uniform {c['uniform_mass']:.3f}); relation-direction gap "
          f"within-across {gap:+.3f} (needs > permutation null q{NULL_QUANTILE:.2f} "
          f"{c['rel_gap_null']:+.3f}); per relation {own}/{len(gaps)} above their own null "
          f"(Bonferroni q{1 - 0.05 / max(len(gaps), 1):.4f}; needs all), smallest gap - null "
          f"{min((g - n for g, n in zip(gaps, nulls)), default=float('nan')):+.3f}")
    metrics = {"attention_mass": mass, "relation_gap": gap, "structured_attention": attn_ok,
               "relation_direction": dir_ok, "relation_null": c["rel_gap_null"],
               "relations_own_direction": own}
    if stored_reason(cells):
        return inconclusive(stored_reason(cells), ev, metrics)
    return decide(attn_ok and dir_ok, ev, metrics)


def run_acquisition(cfg: ExtractionConfig, ctx: RunContext) -> Verdict:
    """Pre-training only, one model per seed; the probes and their nulls."""
    def on_pretrain(labels: dict, seed: int, step: int, m: dict) -> None:
        ctx.log(step, "pretrain", seed=seed, **scalars(m))

    rows = sweep([({}, cfg)], cfg.seeds, ctx.device, finetune=False, on_pretrain=on_pretrain)
    for row in rows:
        row["uniform_mass"] = 2 / cfg.corpus.seq_len
        ctx.log(0, "final", **row)
    return verdict_acquisition(rows)


def verdict_acquisition(rows: list[dict[str, Any]]) -> Verdict:
    """`extraction-acquisition` over the seeds of its "final" records."""
    return over_seeds(rows, judge_acquisition, (), spread_of=("attention_mass", "relation_gap"))


EXTRACTION = Experiment(
    name="extraction",
    claim="After next-token pre-training with multiplicity and Q&A fine-tuning on half of the "
          "subjects, the one-layer attention+MLP model answers questions about held-out facts.",
    config=ExtractionConfig, run=run_extraction,
    figures=functools.partial(figures_extraction, rule=EXTRACTION_RULE),
    presets={"quick": QUICK, "paper": PAPER},
)


@dataclasses.dataclass
class AcquisitionConfig(ExtractionConfig):
    """Pre-training only: the probes of acquisition and their permutation null."""


EXTRACTION_ACQUISITION = Experiment(
    name="extraction-acquisition",
    claim="Next-token pre-training learns structured attention (most mass on subject and "
          "template) and a shared direction per relation in the template images.",
    config=AcquisitionConfig, run=run_acquisition,
    figures=functools.partial(figures_acquisition, rule=EXTRACTION_RULE),
    presets={"quick": QUICK, "paper": PAPER},
)
