"""Knowledge hijack (arXiv 2412.11459, on Birth's model, arXiv 2306.00802): hijack-length and
hijack-prompts. Rules fixed before any run, judged over cfg.seeds with `combine_seeds`.

hijack-length  Judged on the mechanism: Birth's previous-token accuracy of layer 1 at the
    output tokens (`prev_token_at_outputs`), inside T_train and past it, on test sequences of
    length 4 T_train (acc_end beside it). "Inside" is the first half of T_train: the task trains
    the head at query t only through later occurrences of its trigger, about (T_train - t) of
    them, so a position-specific (absolute) head is trained at t < T_train / 2 with at least half
    the signal of the first queries and hardly at all near T_train, in any budget (measured in
    docs/induction.md; the whole window is reported beside). Inside and past are read on the
    same sequences (the longest length's test batch, task.test_batch of them): two batches give
    the same model at the same positions values 0.05 apart, half the slack below. A scheme whose
    head is not sharp inside (< 0.9: the bar of a head that is the rule, not a tendency) says
    nothing about length and is inconclusive. For sharp schemes: an absolute scheme "loses"
    the head when its accuracy past T_train is <= 0.5 (wrong on most queries), a relative one
    "keeps" it when it stays within 0.1 of its inside value. holds: every sharp APE loses it
    and every sharp RPE keeps it, with at least one sharp scheme of each kind; fails: a sharp
    scheme goes the other way; inconclusive: no sharp scheme of one kind.
hijack-prompts  The closed-form logit ξ(j) ≈ λ(e^c n_j + r_j)/(m e^c + L − m) + α_qj, with λ, c,
    α read from the trained weights (`factlab.probes.hijack`), predicts the model's choice among
    the candidates {o, (o2,) j*} of the designed prompts P1-P5. Per family, the agreement must
    reach 0.8 (the formula drops crosstalk and the direct/layer-1 paths; a fifth of prompts may
    be decided by them) and be no lower than the best constant predictor (always o, always j*,
    always o2) on the same prompts. P4 cells longer than T_train are reported, not judged (the
    formula assumes the sharp head that APE loses there). holds: every family passes for every
    scheme that meets the prerequisite (test acc_end >= 0.5 and a sharp head inside T_train);
    fails: a family fails; inconclusive: no scheme meets the prerequisite.
"""

from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace
from typing import Any

from factlab.analysis.curves import mean_record
from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import require
from factlab.experiments.base import TRIGGER_TASK_THREADS, Experiment, RunContext
from factlab.experiments.induction import PAPER, InductionConfig, train_seed
from factlab.models.attention import ABSOLUTE, POS_SCHEMES, RELATIVE
from factlab.pipelines.hijack_prompts import PromptGrid, prompt_cells, score_cells
from factlab.probes.hijack import prev_token_at_outputs, prev_token_profile
from factlab.probes.induction import forward_with_patterns, loss_metrics
from factlab.report.induction import figures_hijack_length, figures_hijack_prompts
from factlab.train.trigger import TEST_SEED, fixed_batch

SHARP = 0.9
LOST = 0.5
KEPT_SLACK = 0.1
AGREE_MIN = 0.8
# the rule's constants, for the figures that draw them
HIJACK_RULE = SimpleNamespace(SHARP=SHARP, LOST=LOST, KEPT_SLACK=KEPT_SLACK, AGREE_MIN=AGREE_MIN)
LEARNED_MIN = 0.5


@dataclasses.dataclass
class LengthConfig(InductionConfig):
    """Schemes trained at task.seq_len and the length multiples they are evaluated at."""

    schemes: tuple[str, ...] = ("ape_random", "rel_bias", "rope1")
    factors: tuple[int, ...] = (1, 2, 4)

    def check(self) -> None:
        super().check()
        bad = [s for s in self.schemes if s not in POS_SCHEMES]
        require(not bad, "schemes", f"unknown scheme {bad[0] if bad else ''!r}; allowed: "
                f"{', '.join(POS_SCHEMES)}")
        require(any(s in ABSOLUTE for s in self.schemes) and
                any(s in RELATIVE for s in self.schemes), "schemes",
                "needs at least one absolute and one relative scheme")
        require(len(self.factors) >= 2 and min(self.factors) == 1, "factors",
                "needs 1 and at least one longer multiple")
        need = max(self.factors) * self.task.seq_len
        require(self.model.max_len >= need, "model.max_len", f"must be >= {need}")


def length_record(cfg: LengthConfig, ctx: RunContext, seed: int) -> dict[str, Any]:
    """Per scheme: previous-token accuracy inside / past T_train and acc_end per length."""
    T0 = cfg.task.seq_len
    rec: dict[str, Any] = {}
    for scheme in cfg.schemes:
        trained = train_seed(cfg, ctx, seed, f"train_{scheme}",
                             dataclasses.replace(cfg.model, pos=scheme))
        r: dict[str, Any] = {}
        for f in cfg.factors:
            x, y, outs = fixed_batch(trained.stats, cfg.task, cfg.task.test_batch, TEST_SEED,
                                     T=f * T0, device=ctx.device)
            logits, A1, _ = forward_with_patterns(trained.model, x)
            m = {"acc_end": loss_metrics(logits, y, outs)["acc_end"],
                 "prev_token_in": prev_token_at_outputs(A1, outs, 1, T0 // 2),
                 "prev_token_in_all": prev_token_at_outputs(A1, outs, 1, T0),
                 "prev_token_late": prev_token_at_outputs(A1, outs, T0) if f > 1 else -1.0}
            ctx.log(f, "length", seed=seed, scheme=scheme, length=f * T0, **m)
            r[f"x{f}"] = m
        width = max(1, T0 // 8)  # where along the longest sequence the head holds (figure)
        for k, acc in enumerate(prev_token_profile(A1, outs, width)):
            ctx.log(k * width, "profile", seed=seed, scheme=scheme, train_len=T0, length=f * T0,
                    acc=acc)
        rec[scheme] = r
    return rec


def length_seed_verdict(rec: dict[str, Any], hi: int) -> Verdict:
    """The hijack-length rule on one record (a seed or the seed mean); `hi` the longest factor."""
    parts, sharp, wrong = [], {"ape": 0, "rpe": 0}, []
    for scheme, r in rec.items():
        longest = r[f"x{hi}"]  # inside and past read on the same sequences
        inside, late = longest["prev_token_in"], longest["prev_token_late"]
        kind = "ape" if scheme in ABSOLUTE else "rpe"
        parts.append(f"{scheme}: prev-token in {inside:.2f} (whole T_train "
                     f"{longest.get('prev_token_in_all', inside):.2f}) / past T {late:.2f}, "
                     "acc_end " + "/".join(f"{v['acc_end']:.2f}" for v in r.values()))
        if inside < SHARP:
            continue
        sharp[kind] += 1
        ok = late <= LOST if kind == "ape" else late >= inside - KEPT_SLACK
        if not ok:
            wrong.append(scheme)
    evidence = "; ".join(parts) + (f" (sharp >= {SHARP} at t < T_train/2; APE lost <= {LOST}, "
                                   f"RPE kept within {KEPT_SLACK})")
    if wrong:
        return decide(False, evidence + f"; wrong way: {', '.join(wrong)}")
    if not (sharp["ape"] and sharp["rpe"]):
        kind = "absolute" if not sharp["ape"] else "relative"
        return inconclusive(f"prerequisite not met: no {kind} scheme has a sharp previous-token "
                            f"head inside T_train", evidence)
    return decide(True, evidence)


def hijack_length_verdict(per_seed: list[dict[str, Any]], hi: int) -> Verdict:
    """Combine per-seed length records into the claim's verdict."""
    schemes = list(per_seed[0])
    evidence = "; ".join(
        f"{s} past-T prev-token {spread([r[s][f'x{hi}']['prev_token_late'] for r in per_seed], '.2f')}"
        for s in schemes)
    mean = length_seed_verdict(mean_record(per_seed), hi)
    return combine_seeds(mean, [length_seed_verdict(r, hi) for r in per_seed],
                         f"{evidence}; seed mean: {mean.evidence}",
                         {"per_seed": per_seed})


def run_hijack_length(cfg: LengthConfig, ctx: RunContext) -> Verdict:
    """Train every scheme per seed at T_train; evaluate at each length multiple."""
    per_seed = [length_record(cfg, ctx, seed) for seed in cfg.seeds]
    return hijack_length_verdict(per_seed, max(cfg.factors))


# --------------------------------------------------------------------------- hijack-prompts


@dataclasses.dataclass
class PromptsConfig(InductionConfig):
    """Schemes, and the P1-P5 grid (lengths in tokens)."""

    schemes: tuple[str, ...] = ("ape_random", "rel_bias")
    grid: PromptGrid = dataclasses.field(default_factory=PromptGrid)

    def check(self) -> None:
        super().check()
        bad = [s for s in self.schemes if s not in POS_SCHEMES]
        require(self.schemes and not bad, "schemes",
                f"needs schemes from {', '.join(POS_SCHEMES)}")
        require(self.model.max_len >= self.grid.longest(), "model.max_len",
                f"must be >= {self.grid.longest()}")


def prompts_seed_verdict(rec: dict[str, Any]) -> Verdict:
    """The hijack-prompts rule on one record {scheme: {...}} (a seed or the seed mean)."""
    parts, failed, ready = [], [], 0
    for scheme, r in rec.items():
        fams = r["families"]
        assumed = (f", α lean j*−o {r['alpha_gap']:.2f}, embedding |cos| {r['embed_cos']:.3f} "
                   f"(random {r['embed_cos_null']:.3f})" if "embed_cos" in r else "")
        parts.append(f"{scheme} (λ {r['lambda']:.2f}, c {r['c']:.2f}{assumed}, prev-token "
                     f"{r['prev_token_in']:.2f}, acc_end {r['acc_end']:.2f}): "
                     + ", ".join(f"{f} {v['agreement']:.2f}/{v['constant']:.2f}"
                                 + (f" (per-query c {v['agreement_cq']:.2f})"
                                    if "agreement_cq" in v else "")
                                 for f, v in fams.items()))
        if r["acc_end"] < LEARNED_MIN or r["prev_token_in"] < SHARP:
            continue
        ready += 1
        failed += [f"{scheme}/{f}" for f, v in fams.items()
                   if v["agreement"] < max(AGREE_MIN, v["constant"])]
    evidence = ("closed-form agreement / best constant per family: " + "; ".join(parts)
                + f" (needs >= max({AGREE_MIN}, constant))")
    if failed:
        return decide(False, evidence + f"; failed: {', '.join(failed)}")
    if not ready:
        return inconclusive("prerequisite not met: no scheme learned a sharp induction circuit "
                            f"(acc_end >= {LEARNED_MIN}, prev-token >= {SHARP})", evidence)
    return decide(True, evidence)


def hijack_prompts_verdict(per_seed: list[dict[str, Any]]) -> Verdict:
    """Combine per-seed prompt records into the claim's verdict."""
    evidence = "; ".join(
        f"{s} λ {spread([r[s]['lambda'] for r in per_seed], '.2f')}, c "
        f"{spread([r[s]['c'] for r in per_seed], '.2f')}" for s in per_seed[0])
    mean = prompts_seed_verdict(mean_record(per_seed))
    return combine_seeds(mean, [prompts_seed_verdict(r) for r in per_seed],
                         f"{evidence}; seed mean: {mean.evidence}",
                         {"per_seed": per_seed})


def run_hijack_prompts(cfg: PromptsConfig, ctx: RunContext) -> Verdict:
    """Train one model per scheme and seed; score every P1-P5 cell against the closed form."""
    per_seed = []
    for seed in cfg.seeds:
        rec = {}
        for scheme in cfg.schemes:
            trained = train_seed(cfg, ctx, seed, f"train_{scheme}",
                                 dataclasses.replace(cfg.model, pos=scheme))
            x, y, outs = fixed_batch(trained.stats, cfg.task, cfg.task.test_batch, TEST_SEED,
                                     device=ctx.device)
            logits, A1, _ = forward_with_patterns(trained.model, x)
            rows, summary = score_cells(trained, prompt_cells(cfg.grid), cfg.task.seq_len, seed)
            for i, row in enumerate(rows):
                ctx.log(i, "prompts", seed=seed, scheme=scheme, **row)
            summary["acc_end"] = loss_metrics(logits, y, outs)["acc_end"]
            summary["prev_token_in"] = prev_token_at_outputs(A1, outs)
            ctx.log(0, "closed_form", seed=seed, scheme=scheme, **summary)
            rec[scheme] = summary
        per_seed.append(rec)
    return hijack_prompts_verdict(per_seed)


# --------------------------------------------------------------------------- registry

# quick: the family's defaults (T = 64, K = 5 random triggers, AdamW lr 0.01, batch 64).
# hijack-length: d = 128, 800 steps, chosen on validation (seed 0, score_early_acc: queries
# t < T/2): ape_random >= 0.96 from step 300, rel_bias 0.90 at 600 and 0.95-0.96 at 800-1000,
# rope1 0.28 at 1000 (it does not learn at lr 0.01; reported, not sharp). At d = 64 the
# hand-built head reaches only 0.82 (65 tokens + 64 positions crowd 64 dimensions; 0.996 at
# d = 128), and ape_random's head near T_train stays untrained in any budget (the rule above).
# hijack-prompts: d = 128 (the closed form assumes near-orthogonal embeddings), rel_bias only:
# its score_acc reaches 0.90 at step 800 and 0.92 at 900-1000 at d = 128, B = 64, so 1000
# steps; ape_random's head over the whole prompt stays below 0.9 (0.78 at 1000 steps, d = 128:
# untrained near T_train) and stays available as schemes=ape_random,rel_bias.
_LENGTH_QUICK = {"model.d_model": 128, "train.steps": 800, "train.eval_every": 100}
_PROMPTS_QUICK = {"schemes": "rel_bias", "train.steps": 1000, "train.eval_every": 100}

HIJACK_LENGTH = Experiment(
    name="hijack-length",
    claim="Trained at one length, an absolute-position model loses its previous-token head past "
          "that length while a relative-position model keeps it.",
    config=LengthConfig,
    run=run_hijack_length,
    figures=functools.partial(figures_hijack_length, rule=HIJACK_RULE),
    threads=TRIGGER_TASK_THREADS,
    presets={"quick": _LENGTH_QUICK, "paper": PAPER},
)

HIJACK_PROMPTS = Experiment(
    name="hijack-prompts",
    claim="On designed prompts (P1-P5) the closed-form logit, with lambda, c and alpha read from "
          "the trained weights, predicts the model's choice between in-context and global "
          "answers.",
    config=PromptsConfig,
    run=run_hijack_prompts,
    figures=functools.partial(figures_hijack_prompts, rule=HIJACK_RULE),
    threads=TRIGGER_TASK_THREADS,
    presets={"quick": _PROMPTS_QUICK,
             "paper": {**PAPER, "grid.n_prompts": 500, "grid.p1_len": 128,
                       "grid.p2_lens": "64,128,256", "grid.p3_len": 128,
                       "grid.p4_lens": "64,128,256,512,1024", "grid.p4_region": 32,
                       "grid.p5_len": 256, "grid.p5_dist": "8,32,64,128,240"}},
)
