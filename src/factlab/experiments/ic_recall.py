"""In-context factual recall with a frozen MLP memory: the pattern claims (arXiv 2605.27774).

A one-layer transformer whose MLP is a frozen associative memory of all S*R triplets is
fine-tuned, attention only, on N fixed IC-recall prompts (k (subject, answer) pairs of a hidden
relation, then a query subject). ~20% of the subjects never appear in a fine-tuning prompt; the
test enumerates every triplet (held-out ones in several contexts). The protocol (validation
split, patience, test at the best-validation checkpoint) is `factlab.pipelines.ic_finetune`.

* ``ic-recall`` (E1): constructed memory M1.
* ``ic-recall-pretrained`` (E3): memory M3 pretrained on Task A at T = 32 (or loaded).
Claim of both: accuracy >= ACC_TARGET on all triplets and on held-out subjects, and the
attention converges to the pairwise pattern. `model.positions=learned|sinusoidal` lets the
score tell subjects from answers, so the pattern is learned rather than forced by geometry.

The rule, fixed before any run (per seed, then `combine_seeds`; the seed mean pools the hit
counts and averages the pattern statistics):

1. Prerequisites, else inconclusive: the memory recalls >= ORACLE_MIN of the triplets from
   the ideal input (M1) or its Task-A pretraining reached PRETRAIN_MIN (M3); some subjects
   are held out; no statistic is NaN (a NaN is never a pass).
2. Accuracy, from chance alone: the 95% Wilson interval of the hit count over all triplets and
   over held-out-subject triplets. Both lower ends >= ACC_TARGET: accurate; either upper end
   < ACC_TARGET: inaccurate; else undecided (too few trials for the test's power). An
   undecided or inaccurate seed whose run ended on its budget while still improving on
   validation is inconclusive (starved), not failed.
3. Pattern, against a null computed in the same run: the same model with W_QK replaced by its
   projection on c I (`probes.ic_recall.isotropic_qk`), whose attention cannot use a learned
   direction separating roles, so it is the pairwise pattern up to geometry. Statistics are
   aggregates over the test prompts: role asymmetry |A_S - A_A| / (A_S + A_A) and pair
   spread std/mean of the per-pair weights. The nearest rivals are the patterns the issue
   names: answers only or subjects only (asymmetry 1) and half of / one of the pairs (spread
   >= 1). Pairwise iff each statistic is nearer the null's value than the rival's, i.e.
   stat <= (null + rival) / 2 (nearest-hypothesis rule, no tuned constant).
Holds: accurate and pairwise. Fails: inaccurate (not starved) or a rival pattern. Else
inconclusive with the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from types import SimpleNamespace
from typing import Any

from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.models.ic_model import ICModelConfig
from factlab.pipelines.ic_finetune import (
    FineTuneResult,
    Protocol,
    fine_tune,
    make_splits,
    validation_rank,
)
from factlab.pipelines.ic_memories import MemoryConfig, Setup, build_setup
from factlab.probes.ic_recall import rival_statistics, wilson_interval
from factlab.report.ic_recall import pattern_figures
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.ic_recall import ICTaskConfig, sample_ic_recall
from factlab.train.loop import TrainConfig

ACC_TARGET = 0.99  # the paper's "~100%", as a success criterion
# the rule's constants, for the figures that draw them
IC_RECALL_RULE = SimpleNamespace(ACC_TARGET=ACC_TARGET)
ORACLE_MIN = 0.99  # the constructed memory must recall >= 99% from the ideal input
PRETRAIN_MIN = 0.99  # the pretrained memory must have learned Task A


@dataclasses.dataclass
class ICRecallConfig(ExperimentConfig):
    """IC-recall fine-tuning: task, model, memory, the fixed training set, protocol, lr grid."""

    task: ICTaskConfig = dataclasses.field(default_factory=ICTaskConfig)
    model: ICModelConfig = dataclasses.field(default_factory=ICModelConfig)
    memory: MemoryConfig = dataclasses.field(default_factory=MemoryConfig)
    protocol: Protocol = dataclasses.field(default_factory=Protocol)
    n_prompts: int = 4096  # N, the fixed fine-tuning set
    lr_grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # chosen on validation loss
    eval_limit: int = 1 << 15  # oracle check: enumerate up to this many triplets
    n_heatmap: int = 4  # prompts shown in the attention heat-map figure
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adam", lr=1e-2, steps=4096, batch_size=256, eval_every=128))

    def check(self) -> None:
        super().check()
        require(self.n_prompts >= 1, "n_prompts", f"must be >= 1, got {self.n_prompts}")
        require(len(self.lr_grid) >= 1 and all(lr > 0 for lr in self.lr_grid), "lr_grid",
                "needs at least one lr, all > 0")
        require(self.eval_limit >= 1, "eval_limit", "must be >= 1")
        require(self.n_heatmap >= 0, "n_heatmap", "must be >= 0")
        require(0 <= self.protocol.heldout_frac < 1, "protocol.heldout_frac", "must be in [0, 1)")
        if self.memory.key == "a" or self.memory.kind == "pretrained":
            require(self.model.train_ov, "model.train_ov",
                    "must be true with memory.key=a or a pretrained memory: only W_OV can map "
                    "answers to their relation")
        if self.memory.kind == "random_features":
            require(self.memory.key == "b", "memory.key",
                    "random_features memories are fitted on key (b) inputs; use memory.key=b")


def setup_for(cfg: ICRecallConfig, ctx: RunContext, task: ICTaskConfig | None = None,
              learn_values: bool = False) -> Setup:
    """`build_setup` with the run's logging and checkpoint store."""
    return build_setup(cfg.memory, task or cfg.task, cfg.model.d_model, cfg.seed, ctx.device,
                       learn_values, cfg.eval_limit,
                       on_pretrain_eval=lambda step, m: ctx.log(step, "pretrain", **m),
                       save=ctx.store.save_checkpoint, show_progress=ctx.show_progress)


def _snapshot_steps(history: list[dict]) -> dict[int, str]:
    """Logged steps nearest to 0%, 10%, 50% and 100% of the run (known after it ends)."""
    steps = [h["step"] for h in history]
    out: dict[int, str] = {}
    for frac in (0.0, 0.1, 0.5, 1.0):
        out.setdefault(min(steps, key=lambda s: abs(s - frac * steps[-1])), f"{frac:.0%}")
    return out


def pattern_seed_record(res: FineTuneResult, seed: int, k: int) -> dict[str, Any]:
    """What the verdict reads from one seed's chosen run."""
    t = res.test
    return {"seed": seed, "lr": res.lr, "steps": res.steps, "stop_reason": res.stop_reason,
            "still_improving": res.still_improving, "k": k,
            **{key: t[key] for key in ("acc_all", "acc_seen", "acc_heldout", "hits_seen",
                                       "n_seen", "hits_heldout", "n_heldout", "alpha_q", "A_S",
                                       "A_A", "asym", "spread", "null_asym", "null_spread",
                                       "null_alpha_q", "null_acc")}}


def pattern_limits(rec: dict[str, Any]) -> tuple[float, float]:
    """(asym, spread) limits of one record: halfway from its null's value to the rivals'."""
    rival = rival_statistics(rec["k"])
    return ((rec["null_asym"] + rival["asym"]) / 2,
            (rec["null_spread"] + rival["spread"]) / 2)


def pattern_verdict(rec: dict[str, Any], prereq: tuple[bool, str]) -> Verdict:
    """The module docstring's rule on one record (a seed, or the pooled seed mean)."""
    ok, why = prereq
    if not ok:
        return inconclusive(f"prerequisite not met: {why}")
    stats = ("asym", "spread", "null_asym", "null_spread")
    if rec["n_heldout"] == 0:
        return inconclusive("no held-out subjects: generalisation cannot be tested")
    if any(rec[k] is None or not math.isfinite(rec[k]) for k in stats):
        return inconclusive("a pattern statistic is NaN")
    n_all = rec["n_seen"] + rec["n_heldout"]
    lo_all, hi_all = wilson_interval(rec["hits_seen"] + rec["hits_heldout"], n_all)
    lo_h, hi_h = wilson_interval(rec["hits_heldout"], rec["n_heldout"])
    lim_a, lim_s = pattern_limits(rec)
    pairwise = rec["asym"] <= lim_a and rec["spread"] <= lim_s
    evidence = (f"acc all {(rec['hits_seen'] + rec['hits_heldout']) / n_all:.4f} "
                f"[{lo_all:.4f}, {hi_all:.4f}], held-out {rec['hits_heldout'] / rec['n_heldout']:.4f}"
                f" [{lo_h:.4f}, {hi_h:.4f}] (95% Wilson, need >= {ACC_TARGET}); asym "
                f"{rec['asym']:.3f} (null {rec['null_asym']:.3f}, limit {lim_a:.3f}), spread "
                f"{rec['spread']:.3f} (null {rec['null_spread']:.3f}, limit {lim_s:.3f})")
    metrics = {"acc_interval": [lo_all, hi_all], "heldout_interval": [lo_h, hi_h],
               "pairwise": pairwise, "asym_limit": lim_a, "spread_limit": lim_s}
    accurate = lo_all >= ACC_TARGET and lo_h >= ACC_TARGET
    inaccurate = hi_all < ACC_TARGET or hi_h < ACC_TARGET
    if not accurate and rec["still_improving"]:
        return inconclusive("budget exhausted while validation loss was still improving",
                            evidence, metrics)
    if inaccurate or not pairwise:
        return decide(False, evidence, metrics)
    if not accurate:
        return inconclusive("accuracy interval straddles the target: too few trials",
                            evidence, metrics)
    return decide(True, evidence, metrics)


def pool_seeds(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed-mean record: hit counts summed, statistics averaged, starved if any seed was."""
    out = {k: sum(r[k] for r in records) for k in ("hits_seen", "n_seen", "hits_heldout",
                                                   "n_heldout")}
    for k in ("asym", "spread", "null_asym", "null_spread", "alpha_q", "A_S", "A_A"):
        out[k] = float(sum(r[k] for r in records) / len(records))
    out.update(k=records[0]["k"], still_improving=any(r["still_improving"] for r in records))
    return out


def pattern_prereq(info: dict[str, Any]) -> tuple[bool, str]:
    """(met, what) for the memory: the oracle check of M1/M2, the pretraining of M3."""
    if "pretrain_acc" in info:
        return info["pretrain_acc"] >= PRETRAIN_MIN, \
            f"Task-A pretraining acc {info['pretrain_acc']:.4f} (need >= {PRETRAIN_MIN})"
    if "oracle_acc" in info:
        return info["oracle_acc"] >= ORACLE_MIN, \
            f"memory oracle {info['oracle_acc']:.4f} (need >= {ORACLE_MIN})"
    return True, "memory loaded from a checkpoint"


def pattern_summary(records: list[dict[str, Any]], info: dict[str, Any]) -> Verdict:
    """Per-seed verdicts, the pooled one, and `combine_seeds` over them."""
    prereq = pattern_prereq(info)
    per_seed = [pattern_verdict(r, prereq) for r in records]
    mean = pattern_verdict(pool_seeds(records), prereq)
    evidence = (f"{mean.evidence}; per seed acc all "
                f"{spread([r['acc_all'] for r in records], '.4f')}, held-out "
                f"{spread([r['acc_heldout'] for r in records], '.4f')}, asym "
                f"{spread([r['asym'] for r in records])}, spread "
                f"{spread([r['spread'] for r in records])}; {prereq[1]}")
    metrics = {"per_seed": records, **{k: v for k, v in info.items() if k != "pretrained_from"}}
    return combine_seeds(mean, per_seed, evidence, metrics)


def run_pattern(cfg: ICRecallConfig, ctx: RunContext) -> Verdict:
    """E1/E3: memory, then per seed the lr grid (chosen on validation) and the test."""
    records, info = measure_pattern(cfg, ctx)
    return pattern_summary(records, info)


def measure_pattern(cfg: ICRecallConfig, ctx: RunContext
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One record per seed (its lr chosen on validation) and the fixture's info."""
    setup = setup_for(cfg, ctx)
    ctx.log(0, "setup", **{k: v for k, v in setup.info.items() if not isinstance(v, str)})
    heat = sample_ic_recall(setup.kb, setup.task, cfg.n_heatmap,
                            make_generator(derive_seed(cfg.seed, "heatmap")))
    heat_tokens = heat["tokens"].to(ctx.device)
    records = []
    for seed in cfg.seeds:
        splits = make_splits(setup, cfg.protocol, cfg.n_prompts, seed, ctx.device)
        runs = []
        for lr in cfg.lr_grid:
            snaps: dict[int, list] = {}

            def on_eval(step: int, m: dict, model: Any, lr: float = lr, seed: int = seed,
                        snaps: dict = snaps) -> None:
                ctx.log(step, "train", lr=lr, seed=seed, **m)
                if cfg.n_heatmap:
                    snaps[step] = model.pattern(heat_tokens).cpu().tolist()

            res = fine_tune(setup, cfg.model, cfg.train, cfg.protocol, splits, lr, seed,
                            ctx.device, on_eval=on_eval, track_null=True,
                            show_progress=ctx.show_progress)
            for step, frac in _snapshot_steps(res.history).items():
                ctx.log(step, "pattern", lr=lr, seed=seed, frac=frac,
                        tokens=heat["tokens"].tolist(), pattern=snaps.get(step, []))
            ctx.log(res.steps, "run", lr=lr, seed=seed, stop_reason=res.stop_reason,
                    still_improving=res.still_improving, val_loss=res.best_val["loss"],
                    val_acc=res.best_val["acc"], **res.test)
            runs.append(res)
        best = min(runs, key=lambda r: validation_rank(r.best_val, cfg.protocol.monitor))
        rec = pattern_seed_record(best, seed, setup.task.k)
        ctx.log(0, "best", **rec)
        records.append(rec)
    return records, setup.info


_PATTERN_CLAIM = ("Fine-tuning only the attention of a one-layer transformer whose MLP is a "
                  "frozen memory of the triplets reaches >= 99% IC-recall accuracy, also on "
                  "subjects never seen in fine-tuning, and the attention converges to the "
                  "pairwise pattern.")

IC_RECALL = Experiment(
    name="ic-recall",
    claim=_PATTERN_CLAIM.replace("frozen memory", "frozen constructed memory"),
    config=ICRecallConfig,
    run=run_pattern,
    figures=functools.partial(pattern_figures, rule=IC_RECALL_RULE),
    presets={"quick": {"task.n_subjects": 512, "task.n_answers": 4, "n_prompts": 8192,
                       "model.d_model": 256, "model.positions": "sinusoidal",
                       "protocol.min_steps": 1500, "protocol.patience": 6,
                       "train.eval_every": 50, "lr_grid": "0.01"},
             "paper": {"task.n_subjects": 1024, "model.d_model": 512,
                       "model.positions": "sinusoidal", "n_prompts": 8192,
                       "lr_grid": "0.001,0.003,0.01"}},
)

# ic-recall-pretrained quick: Task-A pretraining at lr 1e-3. At lr >= 3e-3 the one head
# collapses onto the relation token within 250 steps (attention mass 0.997, subject 0.003: the
# 1/D plateau) and the softmax saturates, so the subject never returns (0.36 at 3000 steps,
# 3e-3; 0.275 at 1e-2). At 1e-3 it splits the mass (subject 0.65, relation 0.23) and Task A
# reaches 0.99 at 3000 steps, 0.998 at 4500 (seed 0); the MLP alone on the ideal input
# stores the facts in 500 steps, so the plateau is the attention's. Pretraining stops at
# 0.998 so the memory leaves room for the 0.99 claim; 1e-2 is tried only if 1e-3 misses it
# (at S = 128, d = 64 it is 1e-2 that escapes). Fine-tuning lr 1e-2 overshot (its
# validation accuracy peaked at 0.90 at step 200 and fell); the grid is (1e-3, 3e-3).
IC_RECALL_PRETRAINED = Experiment(
    name="ic-recall-pretrained",
    claim=_PATTERN_CLAIM.replace("frozen memory", "frozen memory pretrained on factual "
                                 "recall"),
    config=ICRecallConfig,
    run=run_pattern,
    figures=functools.partial(pattern_figures, rule=IC_RECALL_RULE),
    presets={"quick": {"memory.kind": "pretrained", "model.train_ov": True,
                       "model.d_model": 256, "task.n_subjects": 512, "task.n_answers": 4,
                       "model.positions": "sinusoidal",
                       "memory.pretrain.d_mlp": 1024, "memory.pretrain.steps": 6000,
                       "memory.pretrain.seq_len": 32, "memory.pretrain.n_noise": 16,
                       "memory.pretrain.batch_size": 256, "memory.pretrain.eval_every": 250,
                       "memory.pretrain.lr_grid": "0.001,0.01",
                       "memory.pretrain.target_acc": 0.998,
                       "n_prompts": 8192,
                       "protocol.min_steps": 1500, "protocol.patience": 6,
                       "train.eval_every": 50, "lr_grid": "0.001,0.003"},
             "paper": {"memory.kind": "pretrained", "model.train_ov": True,
                       "model.d_model": 128, "task.n_subjects": 256,
                       "model.positions": "sinusoidal",
                       "memory.pretrain.d_mlp": 512, "memory.pretrain.steps": 16384,
                       "memory.pretrain.lr_grid": "0.001,0.003,0.01",
                       "n_prompts": 4096, "lr_grid": "0.001,0.003,0.01"}},
)

__all__ = ["IC_RECALL", "IC_RECALL_PRETRAINED", "ICRecallConfig", "pattern_verdict",
           "pattern_limits", "pattern_summary", "pool_seeds", "setup_for", "run_pattern",
           "measure_pattern"]
