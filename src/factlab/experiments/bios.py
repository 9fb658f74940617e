"""bios: the bioS realism tier (Physics 3.1, arXiv 2309.14316, §8 of our reconstruction).

For each seed and augmentation a small GPT is pre-trained on the biographies of all people,
Q&A fine-tuned on P_train and asked about P_test (exact match of the whole answer). The claim:
held-out accuracy is far higher under the last augmentation (multi5+permute) than under the
first (single).

Verdict rule, fixed before any run, per seed:
- prerequisites (inconclusive when unmet): every augmentation's Q&A fine-tuning fitted P_train
  (`qa_train_acc` >= FITTED = 0.5; the paper reaches ~99% on train even for `single`, so a
  lower value is an unfinished run, not evidence);
- gap = acc(last) - acc(first) on P_test. Its chance spread is the binomial standard error
  under the null of equal rates, se = sqrt(p(1-p) * 2/n) with p pooled and n the P_test items.
  holds when gap >= BIOS_GAP and gap > 2 se; fails when gap + 2 se < BIOS_GAP; otherwise
  inconclusive. Why BIOS_GAP = 0.30: the paper reports 96.6% vs 9.7% at 124M parameters;
  "far higher" should survive a tiny CPU model, and a gap under 30 points would not be the
  qualitative jump the paper describes.
The seed mean (mean rates, pooled items) gets the same rule; `combine_seeds` joins them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from types import SimpleNamespace
from typing import Any

from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ConfigError, ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.models.gpt import GPTConfig
from factlab.pipelines.bios import make_bios_split, run_augment
from factlab.report.realmodels import bios_figures
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.bios import Bios, BiosConfig, parse_augment
from factlab.train.loop import TrainConfig

BIOS_GAP = 0.30
FITTED = 0.5
Z = 2.0
# the rule's constants, for the figures that draw them
BIOS_RULE = SimpleNamespace(BIOS_GAP=BIOS_GAP, Z=Z)


@dataclasses.dataclass
class BiosExperimentConfig(ExperimentConfig):
    """Population, augmentations compared (first = baseline), model and both schedules."""

    augments: tuple[str, ...] = ("single", "multi5+permute")
    test_frac: float = 0.5
    bios: BiosConfig = dataclasses.field(default_factory=BiosConfig)
    model: GPTConfig = dataclasses.field(default_factory=GPTConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=1e-3, weight_decay=0.1, schedule="cosine", warmup_steps=100,
        min_lr_ratio=0.1, steps=3000, batch_size=32, eval_every=250, grad_clip=1.0))
    qa: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=3e-4, weight_decay=0.01, schedule="cosine", min_lr_ratio=0.1,
        steps=600, batch_size=64, eval_every=200, grad_clip=1.0))

    def check(self) -> None:
        super().check()
        require(len(self.augments) >= 2, "augments", "needs a baseline and at least one more")
        for spec in self.augments:
            try:
                parse_augment(spec)
            except ValueError as err:
                raise ConfigError(f"augments: {err}") from None
        require(0 < self.test_frac < 1, "test_frac", "must be in (0, 1)")
        require(self.bios.n_people >= 4, "bios.n_people", "must be >= 4")


def bios_verdict(results: dict[str, dict[str, Any]], base: str, rich: str) -> Verdict:
    """The rule of the module docstring on one seed's (or the seed mean's) results."""
    a, b = results[rich]["qa_test_acc"], results[base]["qa_test_acc"]
    n = int(results[rich].get("n_test_items", 0))
    gap = a - b
    pooled = (a + b) / 2
    se = math.sqrt(max(pooled * (1 - pooled), 0.0) * 2 / n) if n else math.inf
    metrics = {"gap": gap, "se": se, "threshold": BIOS_GAP}
    evidence = (f"held-out Q&A {rich} {a:.3f} vs {base} {b:.3f} (gap {gap:+.3f}, 2se "
                f"{Z * se:.3f}, needs >= {BIOS_GAP}); train Q&A "
                f"{results[rich]['qa_train_acc']:.3f} / {results[base]['qa_train_acc']:.3f}")
    unfit = [k for k, r in results.items() if not r["qa_train_acc"] >= FITTED]
    if unfit:
        return inconclusive(f"Q&A fine-tuning did not fit P_train under {unfit[0]} "
                            f"({results[unfit[0]]['qa_train_acc']:.3f} < {FITTED}); raise "
                            "qa.steps", evidence, metrics)
    if gap >= BIOS_GAP and gap > Z * se:
        return decide(True, evidence, metrics)
    if gap + Z * se < BIOS_GAP:
        return decide(False, evidence, metrics)
    return inconclusive(f"gap {gap:+.3f} +- {Z * se:.3f} straddles {BIOS_GAP}", evidence, metrics)


def judge_bios(per_seed: list[dict[str, dict[str, Any]]], base: str, rich: str) -> Verdict:
    """combine_seeds of the seed-mean verdict and the per-seed verdicts."""
    mean = {aug: {k: sum(s[aug][k] for s in per_seed) / len(per_seed)
                  for k in ("qa_test_acc", "qa_train_acc")}
            for aug in per_seed[0]}
    mean[rich]["n_test_items"] = sum(int(s[rich].get("n_test_items", 0)) for s in per_seed)
    gaps = [s[rich]["qa_test_acc"] - s[base]["qa_test_acc"] for s in per_seed]
    m = bios_verdict(mean, base, rich)
    return combine_seeds(m, [bios_verdict(s, base, rich) for s in per_seed],
                         f"{m.evidence}; gap per seed {spread(gaps)}",
                         {"results": per_seed, "mean": mean})


def run_bios(cfg: BiosExperimentConfig, ctx: RunContext) -> Verdict:
    """For each seed and augmentation: pre-train, Q&A fine-tune on P_train, test P_test."""
    per_seed = []
    for seed in cfg.seeds:
        bios = Bios(cfg.bios, make_generator(derive_seed(seed, "bios")))
        split = make_bios_split(bios, cfg.test_frac, seed)
        per_seed.append({aug: run_augment(split, aug, cfg.model, cfg.pretrain, cfg.qa, seed,
                                          ctx.device, ctx.log, ctx.show_progress)
                         for aug in cfg.augments})
    return judge_bios(per_seed, cfg.augments[0], cfg.augments[-1])


BIOS = Experiment(
    name="bios",
    claim="Held-out Q&A accuracy after QA fine-tuning is far higher when biographies are "
          "pre-trained with multi5+permute augmentation than with a single entry (Physics 3.1).",
    config=BiosExperimentConfig,
    run=run_bios,
    figures=functools.partial(bios_figures, rule=BIOS_RULE),
    presets={
        "quick": {"bios.n_people": 240, "bios.n_first": 30, "bios.n_middle": 30,
                  "bios.n_last": 50, "bios.n_cities": 40, "bios.n_universities": 40,
                  "bios.n_majors": 30, "bios.n_employers": 40, "bios.n_templates": 6,
                  "bios.n_years": 50, "model.d_model": 64, "model.n_layers": 3,
                  "model.n_heads": 4, "pretrain.lr": 3e-3, "pretrain.steps": 2000,
                  "qa.lr": 5e-4, "qa.steps": 300},
        "paper": {"bios.n_people": 100000, "model.d_model": 768, "model.n_layers": 12,
                  "model.n_heads": 12, "model.n_ctx": 512, "pretrain.steps": 80000,
                  "pretrain.batch_size": 96, "pretrain.warmup_steps": 1000,
                  "qa.steps": 50000, "qa.batch_size": 48,
                  "augments": "single,single+permute1,single+permute5,multi5,multi5+permute"},
    },
)
