"""Induction heads on the trigger-bigram task (Birth, arXiv 2306.00802): induction-head and
induction-depth. Rules fixed before any run; every claim is judged over cfg.seeds with
`combine_seeds` (the seed mean's state shared by >= 2/3 of the seeds).

induction-head  Under Birth's optimiser (SGD, momentum 0.9) the global bigram is learned before
    the in-context loss drops, and the three memories are learned top-down: W_O² (wo1), then
    W_K² (wk1), then W_K¹ (wk0), the order Birth states (top-down) and derives from its
    three-step gradient argument. Milestones on the validation curves: the bigram loss covers
    90% of its decrease, the in-context loss 50% of its own, each probe reaches 0.5 (chance is
    1/N or 1/T < 0.02). holds: bigram first and wo1 < wk1 < wk0 strictly; fails: every
    milestone reached and an inversion; inconclusive: a probe never reaches 0.5, the in-context
    loss never drops by 0.5 nats (no head formed), or two probes tie at one evaluation.
induction-depth  One layer does no better than order-free baselines while two layers beat them.
    The null is computed on the same test batch (`factlab.analysis.nulls`): the best of
    "most over-represented token", "count-matched token" and the two-layer model on a shuffled
    prefix. holds: acc1 <= null + 0.05 and acc2 >= null + 0.3; fails: acc2 >= null + 0.3 but
    acc1 > null + 0.05; inconclusive: acc2 short of null + 0.3 (the prerequisite: without a
    working two-layer model there is no contrast; the reason says whether its validation
    accuracy was still rising over the last 20% of training).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from types import SimpleNamespace
from typing import Any

import torch

from factlab.analysis.curves import (
    first_step,
    fmt_step,
    fraction_reached,
    mean_record,
    rose_in_tail,
)
from factlab.analysis.nulls import order_free_accuracies
from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import TRIGGER_TASK_THREADS, Experiment, RunContext
from factlab.models.two_layer import TwoLayerConfig
from factlab.probes.induction import loss_metrics, two_layer_probe
from factlab.report.induction import figures_induction_depth, figures_induction_head
from factlab.runtime import derive_seed, make_generator
from factlab.store.run_dir import read_split
from factlab.tasks.trigger_bigram import TriggerTaskConfig, sample_batch
from factlab.train.loop import TrainConfig
from factlab.train.trigger import (
    TEST_SEED,
    TrainedModel,
    fixed_batch,
    task_stats,
    task_triggers,
    train_trigger_model,
)

BIGRAM_FRACTION = 0.9  # "learned": 90% of its own decrease covered
HEAD_FRACTION = 0.5
HEAD_DROP = 0.5  # nats; a formed head takes loss_head from ~ln 65 = 4.2 towards 0
PROBE_LEVEL = 0.5  # a memory probe "has risen" (chance 1/N or 1/T < 0.02)
PROBES = ("wo1", "wk1", "wk0")  # the top-down order: W_O², W_K², W_K¹
ONE_LAYER_SLACK = 0.05  # one layer may exceed the best order-free null by sampling noise only
TWO_LAYER_GAIN = 0.3  # two layers must beat it by this much
# the rule's constants, for the figures that draw them
INDUCTION_RULE = SimpleNamespace(
    BIGRAM_FRACTION=BIGRAM_FRACTION, HEAD_FRACTION=HEAD_FRACTION, PROBE_LEVEL=PROBE_LEVEL,
    PROBES=PROBES, ONE_LAYER_SLACK=ONE_LAYER_SLACK, TWO_LAYER_GAIN=TWO_LAYER_GAIN)


@dataclasses.dataclass
class InductionConfig(ExperimentConfig):
    """Task, model and training of one trigger-task model (hijack_base-like by default)."""

    task: TriggerTaskConfig = dataclasses.field(default_factory=TriggerTaskConfig)
    model: TwoLayerConfig = dataclasses.field(default_factory=lambda: TwoLayerConfig(d_model=128))
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=0.01, weight_decay=1e-4, steps=300, batch_size=64,
        eval_every=10))
    loss_on: str = "all"  # "all" positions, or "head" (outs >= 2 only: Birth's loss_head_only)
    eval_batch: int = 128  # validation and test sequences (<= task.test_batch)

    def check(self) -> None:
        super().check()
        require(self.loss_on in ("all", "head"), "loss_on", "must be 'all' or 'head'")
        require(1 <= self.eval_batch <= self.task.test_batch, "eval_batch",
                f"must be in [1, task.test_batch={self.task.test_batch}]")
        require(self.model.max_len >= self.task.seq_len, "model.max_len",
                f"must be >= task.seq_len={self.task.seq_len}")
        require(self.loss_on == "all" or self.task.n_triggers > 0, "loss_on",
                "'head' needs task.n_triggers >= 1")


def train_seed(cfg: InductionConfig, ctx: RunContext, seed: int, tag: str,
               model_cfg: Any = None) -> TrainedModel:
    """Train the config's model from `seed`, logging validation probes as split `tag`."""
    stats = task_stats(cfg.task)
    T = cfg.task.seq_len
    pure = sample_batch(stats, 64, T, 0, gen=make_generator(1))[0]
    probe = two_layer_probe(task_triggers(stats, cfg.task), stats.bigram.float(), pure, T)
    return train_trigger_model(
        model_cfg or cfg.model, cfg.task, cfg.train, derive_seed(seed, tag), ctx.device,
        cfg.loss_on, cfg.eval_batch, probe,
        lambda step, m: ctx.log(step, tag, seed=seed, **m), ctx.show_progress, f"{tag} s{seed}")


def seed_rows(ctx: RunContext, tag: str, seed: int) -> list[dict[str, Any]]:
    """The validation records one seed logged under `tag`."""
    return [r for r in read_split(ctx.store.root, tag) if r.get("seed") == seed]


# --------------------------------------------------------------------------- induction-head


def head_milestones(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Milestone steps of one validation curve, and how far loss_head dropped."""
    t_bigram = fraction_reached(rows, "loss_bigram", BIGRAM_FRACTION)
    out = {"bigram": t_bigram, "head": fraction_reached(rows, "loss_head", HEAD_FRACTION)}
    for k in PROBES:
        out[k] = first_step(rows, f"{k}_acc", lambda v: v >= PROBE_LEVEL)
    at = next((r for r in rows if r["step"] >= t_bigram), rows[-1])
    out["head_drop"] = at["loss_head"] - rows[-1]["loss_head"]
    out["acc_end"] = rows[-1]["acc_end"]
    return out


def head_seed_verdict(m: dict[str, float]) -> Verdict:
    """The induction-head rule on one seed's (or the seed mean's) milestones."""
    order = sorted(PROBES, key=lambda k: m[k])
    evidence = (f"loss_bigram {BIGRAM_FRACTION:.0%} down at {fmt_step(m['bigram'])}, loss_head "
                f"{HEAD_FRACTION:.0%} down at {fmt_step(m['head'])}; probes >= {PROBE_LEVEL}: "
                + ", ".join(f"{k} {fmt_step(m[k])}" for k in PROBES)
                + f" (order {' < '.join(order)})")
    missing = [k for k in PROBES if math.isinf(m[k])]
    if missing or math.isinf(m["head"]) or m["head_drop"] < HEAD_DROP:
        return inconclusive(f"prerequisite not met: {', '.join(missing) or 'loss_head'} never "
                            f"reached its level in the step budget", evidence)
    times = [m[k] for k in PROBES]
    if len(set(times)) < len(times):
        return inconclusive("two probes rose at the same evaluation; order unresolved",
                            evidence)
    top_down = times == sorted(times)
    return decide(top_down and m["bigram"] < m["head"], evidence)


def induction_head_verdict(per_seed: list[dict[str, float]]) -> Verdict:
    """Combine the per-seed milestone records (one per seed) into the claim's verdict."""
    verdicts = [head_seed_verdict(m) for m in per_seed]
    mean = mean_record(per_seed)
    orders = [" < ".join(sorted(PROBES, key=lambda k: m[k])) for m in per_seed]
    evidence = (f"seed mean: {head_seed_verdict(mean).evidence}; per-seed orders: "
                f"{'; '.join(orders)}; final acc_end "
                f"{spread([m['acc_end'] for m in per_seed])}")
    return combine_seeds(head_seed_verdict(mean), verdicts, evidence,
                         {"per_seed": per_seed, "orders": orders})


def run_induction_head(cfg: InductionConfig, ctx: RunContext) -> Verdict:
    """Train one model per seed; judge the milestones of its validation curve."""
    per_seed = []
    for seed in cfg.seeds:
        train_seed(cfg, ctx, seed, "val")
        m = head_milestones(seed_rows(ctx, "val", seed))
        ctx.log(0, "milestones", seed=seed, **m)
        per_seed.append(m)
    return induction_head_verdict(per_seed)


# --------------------------------------------------------------------------- induction-depth


def depth_record(cfg: InductionConfig, ctx: RunContext, seed: int) -> dict[str, Any]:
    """Train one and two layers from `seed`; their test acc_end beside the order-free nulls."""
    rec: dict[str, Any] = {}
    models = {}
    for layers in (1, 2):
        tag = f"layers{layers}"
        models[layers] = train_seed(cfg, ctx, seed, tag,
                                    dataclasses.replace(cfg.model, n_layers=layers))
        rec[f"improving{layers}"] = rose_in_tail(seed_rows(ctx, tag, seed), "acc_end")
    rec.update(depth_test(cfg, ctx, seed, models))
    return rec


@torch.no_grad()
def depth_test(cfg: InductionConfig, ctx: RunContext, seed: int,
               models: dict[int, TrainedModel]) -> dict[str, float]:
    """Test acc_end of each depth and the order-free nulls, on the same test batch."""
    stats = models[2].stats
    x, y, outs = fixed_batch(stats, cfg.task, cfg.eval_batch, TEST_SEED, device=ctx.device)
    rec = {f"acc{k}": loss_metrics(m.model(x), y, outs)["acc_end"] for k, m in models.items()}
    nulls = order_free_accuracies(x, y, outs, stats.unigram, models[2].model,
                                  make_generator(derive_seed(seed, "shuffle")))
    rec.update({f"null_{k}": v for k, v in nulls.items()})
    return rec


def depth_seed_verdict(r: dict[str, Any]) -> Verdict:
    """The induction-depth rule on one record (a seed, or the seed mean)."""
    null = r["null_best"]
    evidence = (f"acc_end at outs>=2: one layer {r['acc1']:.3f} (<= null + {ONE_LAYER_SLACK}), "
                f"two layers {r['acc2']:.3f} (>= null + {TWO_LAYER_GAIN}); best order-free null "
                f"{null:.3f} (over-represented {r['null_over_represented']:.3f}, count-match "
                f"{r['null_count_match']:.3f}, shuffled prefix {r['null_shuffled_prefix']:.3f})")
    if r["acc2"] < null + TWO_LAYER_GAIN:
        why = "still improving when the budget ran out" if r["improving2"] else "converged short"
        return inconclusive(f"prerequisite not met: two layers do not beat the null by "
                            f"{TWO_LAYER_GAIN} ({why}), so depth is not contrasted", evidence)
    return decide(r["acc1"] <= null + ONE_LAYER_SLACK, evidence)


def induction_depth_verdict(per_seed: list[dict[str, Any]]) -> Verdict:
    """Combine per-seed depth records into the claim's verdict."""
    mean = mean_record(per_seed)
    evidence = (f"one layer {spread([r['acc1'] for r in per_seed])}, two layers "
                f"{spread([r['acc2'] for r in per_seed])}, best order-free null "
                f"{spread([r['null_best'] for r in per_seed])}")
    mv = depth_seed_verdict(mean)
    return combine_seeds(mv, [depth_seed_verdict(r) for r in per_seed],
                         f"{evidence}; seed mean: {mv.evidence}", {"per_seed": per_seed, "mean": mean})


def run_induction_depth(cfg: InductionConfig, ctx: RunContext) -> Verdict:
    """One- and two-layer models per seed, judged against the nulls of the same test batch."""
    per_seed = []
    for seed in cfg.seeds:
        rec = depth_record(cfg, ctx, seed)
        ctx.log(0, "test", seed=seed, **rec)
        per_seed.append(rec)
    return induction_depth_verdict(per_seed)


# --------------------------------------------------------------------------- registry

# quick: d = 128, T = 64, K = 5 random triggers, uniform outputs, linear final FFN, batch 64,
# 128 validation / test sequences (sized for a shared 2-core machine).
# induction-head uses Birth's optimiser (SGD, momentum 0.9, lr 0.2, wd 1e-4: the reference's
# simplified-model defaults), 600 steps (measured: acc_end ~0.8 by step 400 at this size);
# induction-depth keeps AdamW lr 0.01 for 300 steps (the claim is about depth, not dynamics).
_SGD = {"train.optimizer": "sgd", "train.lr": 0.2, "train.momentum": 0.9,
        "train.weight_decay": 1e-4}
_HEAD_QUICK = {**_SGD, "train.steps": 600, "train.eval_every": 20}
# paper (hijack_base): d = 256, T = 256, SGD momentum 0.9 lr 0.2, batch 512, 3000 iterations.
PAPER = {**_SGD, "model.d_model": 256, "task.seq_len": 256, "train.batch_size": 512,
         "train.steps": 3000, "train.eval_every": 5, "eval_batch": 512}
# Birth's Fig. 3 example: K = 5 fixed triggers, d = 256, no FFN, loss on outs >= 2, SGD lr 0.03.
BIRTH_FIG3 = {**PAPER, "task.fixed_triggers": True, "model.final_ffn": "none",
              "loss_on": "head", "train.lr": 0.03, "train.steps": 1000}

INDUCTION_HEAD = Experiment(
    name="induction-head",
    claim="Under SGD with momentum the global bigram is learned before the in-context loss "
          "drops, and the induction memories are learned top-down: W_O2, then W_K2, then W_K1.",
    config=InductionConfig,
    run=run_induction_head,
    figures=functools.partial(figures_induction_head, rule=INDUCTION_RULE),
    threads=TRIGGER_TASK_THREADS,
    presets={"quick": _HEAD_QUICK, "paper": PAPER, "birth_fig3": BIRTH_FIG3},
)

INDUCTION_DEPTH = Experiment(
    name="induction-depth",
    claim="One layer does no better than order-free baselines (+0.05) at repeated-trigger "
          "positions, while two layers beat them by >= 0.3.",
    config=InductionConfig,
    run=run_induction_depth,
    figures=functools.partial(figures_induction_depth, rule=INDUCTION_RULE),
    threads=TRIGGER_TASK_THREADS,
    presets={"quick": {"train.eval_every": 25}, "paper": PAPER},
)
