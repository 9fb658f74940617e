"""induction-standard: the induction mechanism in a standard transformer (LayerNorm, MLPs,
trained embeddings, every weight trained; arXiv 2306.00802 §3), at both positional schemes
(learned absolute positions and RoPE). Rule fixed before any run, judged over cfg.seeds with
`combine_seeds`; a scheme's record on the test batch (seed 0):

- heads found by score: the layer-1 head with the largest previous-token score and the
  layer-2 head with the largest induction score (`factlab.probes.hijack.head_scores`); each must
  put >= 0.5 of its attention where the mechanism says (a majority of the mass; the uniform
  null of the same batch is reported beside it);
- acc_end >= the best order-free null of the same batch + 0.3 (as in induction-depth);
- hijack prompts: with the most evidence (P1, largest n) the in-context answer wins >= 0.5,
  with none (P2) the global favourite wins >= 0.5.
The acc_end criterion is the prerequisite (the model learned the in-context task). holds:
every scheme passes all three; fails: a scheme that learned the task misses a head or a hijack
rate while its validation head scores had settled; inconclusive: a scheme did not learn the
task (the reason says whether its validation acc_end was still rising over the last 20% of
training), or it missed while a validation head score was still rising over the last 20% (the
budget ended while the circuit formed: "not yet" is not "absent"). That last clause was added
after the first timed runs, whose "fails" rested on previous-token scores of 0.50 still rising
0.4 -> 0.6 over the last 100 of 800 steps; the bars themselves are unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace
from typing import Any

import torch

from factlab.analysis.curves import mean_record, rose_in_tail
from factlab.analysis.nulls import order_free_accuracies
from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ExperimentConfig, require
from factlab.experiments.base import TRIGGER_TASK_THREADS, Experiment, RunContext
from factlab.models.standard import STANDARD_POS, StandardConfig
from factlab.pipelines.hijack_prompts import hijack_rates
from factlab.probes.hijack import head_scores, standard_probe
from factlab.probes.induction import loss_metrics
from factlab.report.induction import figures_standard
from factlab.runtime import derive_seed, make_generator
from factlab.store.run_dir import read_split
from factlab.tasks.trigger_bigram import TriggerTaskConfig
from factlab.train.loop import TrainConfig
from factlab.train.trigger import TEST_SEED, fixed_batch, train_trigger_model

HEAD_MIN = 0.5
GAIN = 0.3
WIN_MIN = 0.5
# the rule's constants, for the figures that draw them
STANDARD_RULE = SimpleNamespace(HEAD_MIN=HEAD_MIN, GAIN=GAIN, WIN_MIN=WIN_MIN)


@dataclasses.dataclass
class StandardExpConfig(ExperimentConfig):
    """The trigger task, the standard transformer and its training (Birth's generic recipe)."""

    task: TriggerTaskConfig = dataclasses.field(default_factory=TriggerTaskConfig)
    model: StandardConfig = dataclasses.field(default_factory=StandardConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=5e-3, weight_decay=0.01, steps=1200, batch_size=64,
        eval_every=50))  # 1200: validation head scores (seed 0) settle by ~1100 (ape_learned
    # previous-token 0.78 / 0.84 / 0.86 at 1000 / 1100 / 1200) and rope's rises 0.73 -> 0.77;
    # at 800 both were still climbing 0.4 -> 0.6 (docs/induction.md)
    schemes: tuple[str, ...] = STANDARD_POS
    eval_batch: int = 128
    n_prompts: int = 200
    p1_n: int = 8  # evidence pairs of the P1 cell
    prompt_len: int = 64

    def check(self) -> None:
        super().check()
        bad = [s for s in self.schemes if s not in STANDARD_POS]
        require(self.schemes and not bad, "schemes", f"needs schemes from {STANDARD_POS}")
        require(1 <= self.eval_batch <= self.task.test_batch, "eval_batch",
                f"must be in [1, task.test_batch={self.task.test_batch}]")
        require(self.model.n_layers >= 2, "model.n_layers", "needs >= 2 layers")
        require(self.n_prompts >= 1, "n_prompts", "must be >= 1")
        require(self.prompt_len >= 8, "prompt_len", "must be >= 8")
        require(1 <= self.p1_n <= self.prompt_len // 4, "p1_n",
                "must be in [1, prompt_len // 4] (pairs in the first half)")
        require(self.model.max_len >= max(self.task.seq_len, self.prompt_len), "model.max_len",
                "must cover task.seq_len and prompt_len")


def scheme_record(cfg: StandardExpConfig, ctx: RunContext, seed: int,
                  scheme: str) -> dict[str, Any]:
    """Train one scheme from `seed`; head scores, acc_end vs null and hijack rates on test."""
    tag = f"val_{scheme}"
    trained = train_trigger_model(
        dataclasses.replace(cfg.model, pos=scheme), cfg.task, cfg.train,
        derive_seed(seed, scheme), ctx.device, "all", cfg.eval_batch, standard_probe,
        lambda step, m: ctx.log(step, "val", seed=seed, scheme=scheme, **m),
        ctx.show_progress, f"{tag} s{seed}")
    rows = [r for r in read_split(ctx.store.root, "val")
            if r.get("seed") == seed and r.get("scheme") == scheme]
    with torch.no_grad():
        rec = test_record(cfg, ctx, seed, trained, rose_in_tail(rows, "acc_end"))
    rec["heads_improving"] = any(rose_in_tail(rows, k) for k in ("prev_score", "induction_score"))
    return rec


def test_record(cfg: StandardExpConfig, ctx: RunContext, seed: int, trained,
                improving: bool) -> dict[str, Any]:
    """Head scores, acc_end vs the order-free null and the hijack rates, on test."""
    model, stats = trained.model, trained.stats
    x, y, outs = fixed_batch(stats, cfg.task, cfg.eval_batch, TEST_SEED, device=ctx.device)
    logits, cache = model.run_with_cache(x, names_filter=lambda n: n.endswith("hook_pattern"))
    s0 = head_scores(cache["blocks.0.attn.hook_pattern"], x, outs)
    s1 = head_scores(cache["blocks.1.attn.hook_pattern"], x, outs)
    nulls = order_free_accuracies(x, y, outs, stats.unigram, model,
                                  make_generator(derive_seed(seed, "shuffle")))
    rec = {"acc_end": loss_metrics(logits, y, outs)["acc_end"], "null_best": nulls["best"],
           "prev_head": int(s0["prev"].argmax()), "prev_score": float(s0["prev"].max()),
           "prev_null": float(s0["prev_null"][0]),
           "induction_head": int(s1["induction"].argmax()),
           "induction_score": float(s1["induction"].max()),
           "induction_null": float(s1["induction_null"][0]),
           "improving": improving}
    for name, n_o in (("p1", cfg.p1_n), ("p2", 0)):
        rates = hijack_rates(model, stats, cfg.n_prompts, cfg.prompt_len, n_o,
                             derive_seed(seed, name), ctx.device)
        rec[f"{name}_in_context"], rec[f"{name}_global"] = rates["in_context"], rates["global"]
    return rec


def standard_seed_verdict(rec: dict[str, Any]) -> Verdict:
    """The induction-standard rule on one record {scheme: {...}} (a seed or the seed mean)."""
    parts, missed, rising, starved = [], [], [], []
    for scheme, r in rec.items():
        parts.append(f"{scheme}: prev-token head {r['prev_score']:.2f} (uniform "
                     f"{r['prev_null']:.2f}), induction head {r['induction_score']:.2f} (uniform "
                     f"{r['induction_null']:.2f}), acc_end {r['acc_end']:.2f} vs null "
                     f"{r['null_best']:.2f}, P1 in-context {r['p1_in_context']:.2f}, P2 global "
                     f"{r['p2_global']:.2f}")
        if r["acc_end"] < r["null_best"] + GAIN:
            starved.append(scheme)
        elif not (r["prev_score"] >= HEAD_MIN and r["induction_score"] >= HEAD_MIN
                  and r["p1_in_context"] >= WIN_MIN and r["p2_global"] >= WIN_MIN):
            (rising if r.get("heads_improving") else missed).append(scheme)
    evidence = "; ".join(parts)
    if missed:
        return decide(False, evidence + f"; learned the task without the mechanism: "
                      f"{', '.join(missed)}")
    if rising:
        return inconclusive(f"budget: {', '.join(rising)} missed a bar while a validation head "
                            "score still rose over the last 20% of training", evidence)
    if starved:
        improving = [s for s in starved if rec[s]["improving"]]
        return inconclusive(f"prerequisite not met: acc_end short of null + {GAIN} for "
                            f"{', '.join(starved)} (still improving: "
                            f"{', '.join(improving) or 'none'})", evidence)
    return decide(True, evidence)


def standard_verdict(per_seed: list[dict[str, Any]]) -> Verdict:
    """Combine per-seed records into the claim's verdict."""
    evidence = "; ".join(
        f"{s} acc_end {spread([r[s]['acc_end'] for r in per_seed], '.2f')}, induction head "
        f"{spread([r[s]['induction_score'] for r in per_seed], '.2f')}" for s in per_seed[0])
    mean = standard_seed_verdict(mean_record(per_seed))
    return combine_seeds(mean, [standard_seed_verdict(r) for r in per_seed],
                         f"{evidence}; seed mean: {mean.evidence}",
                         {"per_seed": per_seed})


def run_standard(cfg: StandardExpConfig, ctx: RunContext) -> Verdict:
    """Every scheme per seed; one record per seed."""
    per_seed = []
    for seed in cfg.seeds:
        rec = {s: scheme_record(cfg, ctx, seed, s) for s in cfg.schemes}
        for s, r in rec.items():
            ctx.log(0, "test", seed=seed, scheme=s, **r)
        per_seed.append(rec)
    return standard_verdict(per_seed)


INDUCTION_STANDARD = Experiment(
    name="induction-standard",
    claim="A standard transformer (LayerNorm, MLPs, every weight trained) forms a previous-token "
          "and an induction head found by score, at learned-absolute and rotary positions, and "
          "in-context evidence overrides its global bigram knowledge.",
    config=StandardExpConfig,
    run=run_standard,
    figures=functools.partial(figures_standard, rule=STANDARD_RULE),
    threads=TRIGGER_TASK_THREADS,
    presets={"quick": {}},
)
