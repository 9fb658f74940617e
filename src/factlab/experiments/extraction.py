"""Knowledge acquisition and extraction experiments (arXiv 2508.00901; spec §6-§7).

Each experiment runs the pipeline of `factlab.pipelines.extraction` over a grid and seeds, and judges
its claim against the thresholds below (each with its reason). Figures are in
`factlab.experiments.extraction_figures`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from factlab.analysis.stats import spearman
from factlab.analysis.verdicts import Verdict, decide
from factlab.config import require
from factlab.experiments.base import Experiment, RunContext
from factlab.experiments.extraction_figures import (
    figures_attention_only,
    figures_extraction,
    figures_lora,
    figures_schedule,
    make_trend_figure,
)
from factlab.pipelines.extraction import (
    STORED_MIN,
    ExtractionConfig,
    finetune_copy,
    pretrained_model,
    run_pipeline,
)
from factlab.probes import extraction as P
from factlab.tasks.extraction_corpus import CorpusConfig

# ----------------------------------------------------------------------------- thresholds

EXTRACT_MIN = 0.5
"""Held-out Q&A accuracy that counts as "extracts": a majority of never-fine-tuned facts
answered, against chance 1/D (<= 0.125 at our sizes) inside the right answer block."""

RHO_MIN = 0.8
"""Spearman correlation of seed means with the knob that counts as a monotone trend. With 4
grid points one adjacent swap still gives 0.8; with 3 points it demands a strict order."""

MIN_EFFECT = 0.05
"""Smallest end-to-end change of seed-mean accuracy along a sweep that counts as a trend: the
seed-to-seed spread of held-out accuracy at the quick sizes is a few points."""

NEAR_CHANCE_FACTOR = 2.0
"""Failure regime: held-out Q&A accuracy <= 2/D (twice the within-block chance) is "near
chance"; anything above means the format already reaches the stored facts."""

LORA_GAP = 0.05
"""LoRA "about as well as full fine-tuning": rank-1 held-out accuracy within 5 points of full
fine-tuning at full coverage (the size of the seed spread)."""

TOP_ENERGY_MIN = 0.5
""""Dominated by one direction": σ1² / Σσ² >= 0.5 for the full-FT update of W_1 (spec §6)."""

SCHEDULE_EFFECT = 0.05
"""A schedule "shapes the dynamics" when held-out accuracy (seed means) spreads by >= 5
points across schedules (beyond the seed spread), or steps-to-acquire by >= 20% of their
median, or some schedules acquire (>= 99%) within the budget and others do not."""

SCHEDULE_STEPS_EFFECT = 0.2


def trend_verdict(values: list[float], means: list[float], sign: int,
                  ) -> tuple[bool, float, float]:
    """(holds, rho, effect): rank correlation of seed means with the knob, signed change."""
    rho = spearman(np.array(values), np.array(means))
    effect = sign * (means[-1] - means[0])
    ok = bool(np.isfinite(rho) and sign * rho >= RHO_MIN and effect >= MIN_EFFECT)
    return ok, rho, effect


def seed_means(rows: list[dict], key: str, cell_key: str, values: list) -> list[float]:
    """Mean of `key` over seeds for each cell value, in the order of `values`."""
    return [float(np.nanmean([r[key] for r in rows if r[cell_key] == v])) for v in values]


def _fit_text(rows: list[dict]) -> tuple[dict[str, float], str]:
    fit = P.fit_log_error(np.array([r["bound_x"] for r in rows]),
                          np.array([r["test_acc"] for r in rows]))
    return fit, f"fit log err = a - b x: b = {fit['b']:.3g}, R^2 = {fit['r2']:.2f}"


def _scalar(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not isinstance(v, (list, torch.Tensor))}


# ----------------------------------------------------------------------------- experiments


def run_extraction(cfg: ExtractionConfig, ctx: RunContext) -> Verdict:
    """One pipeline run with every metric; curves of both phases in metrics.jsonl."""
    seed = cfg.seeds[0]

    def log(phase: str, step: int, m: dict) -> None:
        ctx.log(step, phase, **_scalar(m))

    out = run_pipeline(cfg, seed, ctx.device, log, ctx.show_progress)
    ctx.log(0, "final", **out)
    stored, acc = out["stored_acc"], out["test_acc"]
    holds = stored >= STORED_MIN and acc >= EXTRACT_MIN
    ev = (f"stored acc {stored:.3f} (needs >= {STORED_MIN}); held-out Q&A acc {acc:.3f} "
          f"(needs >= {EXTRACT_MIN}, chance {out['chance']:.3f}); cells cov/seen "
          f"{out['test_acc_cov_seen']:.2f}, cov/unseen {out['test_acc_cov_unseen']:.2f}; "
          f"retained {out['retained_acc']:.3f}; hallucination {out['test_hallucination']:.2f}")
    return decide(holds, ev, _scalar(out))


def _sweep_cells(cfg: ExtractionConfig, ctx: RunContext, key: str, values: list,
                 make: Callable[[ExtractionConfig, Any], ExtractionConfig]) -> list[dict]:
    """Run the full pipeline for every value x seed; log one "cell" record each."""
    rows = []
    for value in values:
        for seed in cfg.seeds:
            out = run_pipeline(make(cfg, value), seed, ctx.device)
            row = {key: value, "seed": seed, **_scalar(out)}
            rows.append(row)
            ctx.log(len(rows) - 1, "cell", **row)
    return rows


def _trend(rows: list[dict], key: str, values: list, sign: int, label: str,
           ) -> tuple[bool, str, dict[str, Any]]:
    means = seed_means(rows, "test_acc", key, values)
    ok, rho, effect = trend_verdict(values, means, sign)
    fit, fit_text = _fit_text(rows)
    pairs = ", ".join(f"{v:g}: {m:.3f}" for v, m in zip(values, means))
    word = "rises" if sign > 0 else "falls"
    ev = (f"held-out acc by {label} {{{pairs}}}; Spearman rho {rho:+.2f} (needs "
          f"{'>=' if sign > 0 else '<='} {sign * RHO_MIN:+.1f}), change {effect:+.3f} (needs >= "
          f"{MIN_EFFECT}); {fit_text}")
    metrics = {"values": values, "test_acc_mean": means, "rho": rho, "effect": effect,
               "fit": fit, "claim_direction": word,
               "stored_acc_mean": seed_means(rows, "stored_acc", key, values)}
    return ok, ev, metrics


def run_multiplicity(cfg: MultiplicityConfig, ctx: RunContext) -> Verdict:
    """S2: held-out extraction vs multiplicity K."""
    values = list(cfg.values)
    rows = _sweep_cells(cfg, ctx, "K", values, lambda c, k: dataclasses.replace(
        c, corpus=dataclasses.replace(c.corpus, multiplicity=k)))
    ok, ev, metrics = _trend(rows, "K", values, +1, "K")
    return decide(ok, ev, metrics)


def run_universe(cfg: UniverseConfig, ctx: RunContext) -> Verdict:
    """S5: held-out extraction vs the template universe |R| = n_rel * tau at fixed K, Ñ_f."""
    values = [cfg.corpus.n_relations * t for t in cfg.values]
    rows = _sweep_cells(cfg, ctx, "universe_size", values, lambda c, u: dataclasses.replace(
        c, corpus=dataclasses.replace(c.corpus, n_templates=u // c.corpus.n_relations)))
    ok, ev, metrics = _trend(rows, "universe_size", values, -1, "|R|")
    return decide(ok, ev, metrics)


def run_coverage(cfg: CoverageConfig, ctx: RunContext) -> Verdict:
    """S3: held-out extraction vs coverage c (random C and whole relations), one pre-training
    per seed shared by all cells; the failure regime at the smallest c."""
    rows = []
    values = list(cfg.values)
    for seed in cfg.seeds:
        model, pre = pretrained_model(cfg, seed, ctx.device)
        for mode in cfg.modes:
            for c in values:
                cell = dataclasses.replace(cfg, corpus=dataclasses.replace(
                    cfg.corpus, coverage=c, coverage_mode=mode))
                out = {**pre, **finetune_copy(model, cell, seed, ctx.device)}
                row = {"coverage": c, "mode": mode, "seed": seed, **_scalar(out)}
                rows.append(row)
                ctx.log(len(rows) - 1, "cell", **row)
    main = [r for r in rows if r["mode"] == cfg.modes[0]]
    ok, ev, metrics = _trend(main, "coverage", values, +1, f"c ({cfg.modes[0]} C)")
    low = [r for r in main if r["coverage"] == values[0]]
    low_acc = float(np.mean([r["test_acc"] for r in low]))
    low_ret = float(np.mean([r["retained_acc"] for r in low]))
    stored = float(np.mean([r["stored_acc"] for r in low]))
    near = NEAR_CHANCE_FACTOR / cfg.corpus.n_answers
    failure = stored >= STORED_MIN and low_acc <= near
    metrics.update(failure_regime=failure, low_coverage_acc=low_acc, low_coverage_stored=stored,
                   low_coverage_retained=low_ret, near_chance=near)
    if "relations" in cfg.modes:
        rel = [r for r in rows if r["mode"] == "relations" and 0 < r["coverage"] < 1]
        if rel:
            metrics["relations_covered_acc"] = float(np.nanmean(
                [r["test_acc_rel_covered"] for r in rel]))
            metrics["relations_uncovered_acc"] = float(np.nanmean(
                [r["test_acc_rel_uncovered"] for r in rel]))
            ev += (f"; whole-relation C: covered rel {metrics['relations_covered_acc']:.3f} vs "
                   f"uncovered {metrics['relations_uncovered_acc']:.3f}")
    ev = (f"trend {'holds' if ok else 'fails'}: {ev}; failure regime "
          f"{'shown' if failure else 'NOT shown'} at c={values[0]:g}: stored {stored:.3f} "
          f"(needs >= {STORED_MIN}), held-out {low_acc:.3f} (near chance needs <= {near:.3f})")
    return decide(ok and failure, ev, metrics)


def run_lora(cfg: LoRAExpConfig, ctx: RunContext) -> Verdict:
    """S6: full fine-tuning vs LoRA ranks at two coverages; ΔW spectrum of full FT."""
    rows = []
    for seed in cfg.seeds:
        model, pre = pretrained_model(cfg, seed, ctx.device)
        for c in cfg.coverages:
            for rank in [0, *cfg.ranks]:  # 0 = full fine-tuning
                cell = dataclasses.replace(cfg, method="full" if rank == 0 else "lora",
                                           lora_rank=max(rank, 1), corpus=dataclasses.replace(
                                               cfg.corpus, coverage=c))
                out = {**pre, **finetune_copy(model, cell, seed, ctx.device)}
                row = {"coverage": c, "rank": rank, "seed": seed, **_scalar(out)}
                if rank == 0:
                    row["dW_in_sv"], row["dW_QK_sv"] = out.get("dW_in_sv"), out.get("dW_QK_sv")
                rows.append(row)
                ctx.log(len(rows) - 1, "cell", **row)
    c_hi = max(cfg.coverages)
    hi = [r for r in rows if r["coverage"] == c_hi]

    def mean(rank: int, key: str) -> float:
        return float(np.nanmean([r.get(key, np.nan) for r in hi if r["rank"] == rank]))

    full, r1 = mean(0, "test_acc"), mean(min(cfg.ranks), "test_acc")
    energy, qk_energy = mean(0, "dW_in_top_energy"), mean(0, "dW_QK_top_energy")
    align, qk_align = mean(0, "dW_in_align_format"), mean(0, "dW_QK_align_afmt")
    chance = mean(0, "align_chance")
    comparable = r1 >= full - LORA_GAP
    rank_one = energy >= TOP_ENERGY_MIN
    by_rank = ", ".join(f"r={k}: {mean(k, 'test_acc'):.3f}" for k in cfg.ranks)
    ev = (f"c={c_hi:g}: full FT {full:.3f}, LoRA {by_rank} (rank {min(cfg.ranks)} needs >= full "
          f"- {LORA_GAP}); full-FT dW_in sigma1^2/sum = {energy:.2f} (needs >= "
          f"{TOP_ENERGY_MIN}), |cos| with format {align:.2f} (random {chance:.2f}); dW_QK "
          f"sigma1^2/sum = {qk_energy:.2f}, |cos| with phi(AFMT) {qk_align:.2f}")
    metrics = {"full_acc": full, "lora_acc": {str(k): mean(k, "test_acc") for k in cfg.ranks},
               "dW_in_top_energy": energy, "dW_QK_top_energy": qk_energy,
               "dW_in_align_format": align, "dW_QK_align_afmt": qk_align,
               "lora_comparable": comparable, "full_update_rank_one": rank_one}
    return decide(comparable and rank_one, ev, metrics)


def run_schedule(cfg: ScheduleConfig, ctx: RunContext) -> Verdict:
    """S7: each schedule applied to pre-training (constant FT) and to fine-tuning (constant
    pre-training); pre-training curves logged with split "pretrain"."""
    rows = []
    for seed in cfg.seeds:
        base_model = None
        for phase in ("pretrain", "finetune"):
            for name in cfg.schedules:
                if phase == "finetune" and name == "constant":
                    continue  # identical to the constant pre-training cell
                cell = dataclasses.replace(cfg, pretrain_schedule=name if phase == "pretrain"
                                           else "constant", finetune_schedule=name
                                           if phase == "finetune" else "constant")
                if phase == "pretrain":
                    def log(step: int, m: dict, name=name, seed=seed) -> None:
                        ctx.log(step, "pretrain", schedule=name, seed=seed, **_scalar(m))

                    model, pre = pretrained_model(cell, seed, ctx.device, log)
                    if name == "constant":
                        base_model, base_pre = model, pre
                else:
                    model, pre = base_model, base_pre
                out = {**pre, **finetune_copy(model, cell, seed, ctx.device)}
                row = {"phase": phase, "schedule": name, "seed": seed, **_scalar(out)}
                rows.append(row)
                ctx.log(len(rows) - 1, "cell", **row)
                if phase == "pretrain" and name == "constant":
                    rows.append({**row, "phase": "finetune"})
                    ctx.log(len(rows) - 1, "cell", **rows[-1])
    metrics: dict[str, Any] = {}
    parts, shaped = [], False
    for phase in ("pretrain", "finetune"):
        sel = [r for r in rows if r["phase"] == phase]
        acc = {n: float(np.mean([r["test_acc"] for r in sel if r["schedule"] == n]))
               for n in cfg.schedules}
        steps = {n: _mean_or_nan([r["steps_to_acquire"] for r in sel if r["schedule"] == n])
                 for n in cfg.schedules}
        stored = {n: float(np.mean([r["stored_acc"] for r in sel if r["schedule"] == n]))
                  for n in cfg.schedules}
        spread = max(acc.values()) - min(acc.values())
        metrics[phase] = {"test_acc": acc, "steps_to_acquire": steps, "stored_acc": stored,
                          "acc_spread": spread}
        shaped |= spread >= SCHEDULE_EFFECT
        text = ", ".join(f"{n} {acc[n]:.3f}" for n in cfg.schedules)
        if phase == "pretrain":
            finite = [v for v in steps.values() if np.isfinite(v)]
            step_spread = (max(finite) - min(finite)) / np.median(finite) if finite else 0.0
            mixed = 0 < len(finite) < len(steps)  # some schedules acquire in budget, some not
            metrics[phase].update(steps_spread=step_spread, acquisition_differs=mixed)
            shaped |= step_spread >= SCHEDULE_STEPS_EFFECT or mixed
            text += "; stored acc " + ", ".join(f"{n} {stored[n]:.3f}" for n in cfg.schedules)
            text += "; steps to 99% stored (nan: not within budget) " + ", ".join(
                f"{n} {steps[n]:.0f}" for n in cfg.schedules)
        parts.append(f"{phase} schedule -> held-out acc {text}")
    ev = "; ".join(parts) + (f" (an effect needs an acc spread >= {SCHEDULE_EFFECT}, a "
                             f"steps spread >= {SCHEDULE_STEPS_EFFECT:.0%}, or acquisition "
                             f"within budget for some schedules only)")
    return decide(shaped, ev, metrics)


def _mean_or_nan(values: list) -> float:
    """Mean of the finite values (None and NaN skipped); NaN when there are none."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def run_attention_only(cfg: AttentionOnlyConfig, ctx: RunContext) -> Verdict:
    """S8: the pipeline without the MLP (one head, and `multi_heads` heads) vs with it."""
    d = cfg.model.d_model
    variants = {
        "mlp": cfg.model,
        "attn_1head": dataclasses.replace(cfg.model, d_mlp=0, n_heads=1, d_head=d),
        f"attn_{cfg.multi_heads}heads": dataclasses.replace(
            cfg.model, d_mlp=0, n_heads=cfg.multi_heads, d_head=max(1, d // cfg.multi_heads)),
    }
    rows = []
    for name, mcfg in variants.items():
        for seed in cfg.seeds:
            out = run_pipeline(dataclasses.replace(cfg, model=mcfg), seed, ctx.device)
            row = {"variant": name, "seed": seed, **_scalar(out)}
            rows.append(row)
            ctx.log(len(rows) - 1, "cell", **row)

    def mean(name: str, key: str) -> float:
        return float(np.mean([r[key] for r in rows if r["variant"] == name]))

    metrics = {n: {"stored_acc": mean(n, "stored_acc"), "test_acc": mean(n, "test_acc")}
               for n in variants}
    fails = metrics["attn_1head"]["stored_acc"] < STORED_MIN or \
        metrics["attn_1head"]["test_acc"] < EXTRACT_MIN
    mlp_ok = metrics["mlp"]["stored_acc"] >= STORED_MIN and \
        metrics["mlp"]["test_acc"] >= EXTRACT_MIN
    ev = "; ".join(f"{n}: stored {m['stored_acc']:.3f}, held-out {m['test_acc']:.3f}"
                   for n, m in metrics.items())
    ev += (f" (fails = stored < {STORED_MIN} or held-out < {EXTRACT_MIN}; the claim needs the "
           f"1-head attention-only model to fail while the MLP model succeeds)")
    return decide(fails and mlp_ok, ev, metrics)


# ----------------------------------------------------------------------------- sweep configs


@dataclasses.dataclass
class MultiplicityConfig(ExtractionConfig):
    """S2 grid: multiplicity K (each value <= corpus.n_templates)."""

    values: tuple[int, ...] = (1, 2, 4, 8)
    seeds: tuple[int, ...] = (0, 1, 2)

    def check(self) -> None:
        super().check()
        require(len(self.values) >= 2, "values", "needs at least two K")
        bad = [k for k in self.values if not 1 <= k <= self.corpus.n_templates]
        require(not bad, "values", f"each K must be in 1..corpus.n_templates="
                f"{self.corpus.n_templates}; got {bad[0] if bad else ''}")


@dataclasses.dataclass
class UniverseConfig(ExtractionConfig):
    """S5 grid: templates per relation tau (|R| = n_rel * tau), each >= corpus.multiplicity."""

    corpus: CorpusConfig = dataclasses.field(default_factory=lambda: CorpusConfig(
        multiplicity=2))  # spec S5: K = 2, so that tau = 2 is allowed
    values: tuple[int, ...] = (2, 8, 32)
    seeds: tuple[int, ...] = (0, 1, 2)

    def check(self) -> None:
        super().check()
        require(len(self.values) >= 2, "values", "needs at least two tau")
        bad = [t for t in self.values if t < self.corpus.multiplicity]
        require(not bad, "values", f"each tau must be >= corpus.multiplicity="
                f"{self.corpus.multiplicity}; got {bad[0] if bad else ''}")


@dataclasses.dataclass
class CoverageConfig(ExtractionConfig):
    """S3 grid: coverage c (ascending) for each C mode; the first mode decides the trend."""

    values: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0)
    modes: tuple[str, ...] = ("random", "relations")
    seeds: tuple[int, ...] = (0, 1, 2)

    def check(self) -> None:
        super().check()
        require(len(self.values) >= 2 and list(self.values) == sorted(self.values), "values",
                "needs at least two coverages, ascending")
        require(all(0 <= c <= 1 for c in self.values), "values", "each c must be in [0, 1]")
        bad = [m for m in self.modes if m not in ("random", "relations")]
        require(not bad and len(self.modes) >= 1, "modes",
                f"each must be 'random' or 'relations'; got {bad or 'nothing'}")


@dataclasses.dataclass
class LoRAExpConfig(ExtractionConfig):
    """S6 grid: LoRA ranks (plus full fine-tuning) at each coverage."""

    ranks: tuple[int, ...] = (1, 2, 4, 8)
    coverages: tuple[float, ...] = (0.25, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)

    def check(self) -> None:
        super().check()
        require(len(self.ranks) >= 1 and min(self.ranks) >= 1, "ranks", "each rank must be >= 1")
        require(len(self.coverages) >= 1 and all(0 < c <= 1 for c in self.coverages),
                "coverages", "each must be in (0, 1]")


@dataclasses.dataclass
class ScheduleConfig(ExtractionConfig):
    """S7: which §5 schedules to compare (constant must be among them, as the baseline)."""

    schedules: tuple[str, ...] = ("constant", "warmup_cosine", "cosine", "step")
    seeds: tuple[int, ...] = (0, 1, 2)

    def check(self) -> None:
        super().check()
        allowed = ("constant", "warmup_cosine", "cosine", "step")
        bad = [s for s in self.schedules if s not in allowed]
        require(not bad, "schedules", f"each must be one of {', '.join(allowed)}; got {bad}")
        require("constant" in self.schedules, "schedules", "must include 'constant'")


@dataclasses.dataclass
class AttentionOnlyConfig(ExtractionConfig):
    """S8: the number of heads of the multi-head attention-only variant."""

    multi_heads: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)

    def check(self) -> None:
        super().check()
        require(self.multi_heads >= 2, "multi_heads", f"must be >= 2, got {self.multi_heads}")
        require(self.model.d_mlp > 0, "model.d_mlp", "the baseline needs an MLP (> 0)")


# ----------------------------------------------------------------------------- registry

_QUICK = {
    "corpus.n_subjects": 200, "corpus.n_relations": 4, "corpus.n_templates": 4,
    "corpus.n_answers": 8, "corpus.multiplicity": 2, "corpus.seq_len": 8, "corpus.n_noise": 16,
    "corpus.n_finetune": 1000, "model.d_model": 64, "model.d_head": 64, "model.d_mlp": 256,
    "pretrain.lr": 3e-3, "pretrain.steps": 4000, "pretrain.eval_every": 250,
    "finetune.lr": 3e-4, "finetune.steps": 500, "finetune.eval_every": 500, "lora_lr": 1e-2,
}
_QUICK_SWEEP = {**_QUICK, "pretrain.eval_every": 500}
_PAPER = {"lora_lr": 3e-3}

EXTRACTION = Experiment(
    name="extraction",
    claim="After next-token pre-training with multiplicity and Q&A fine-tuning on half of the "
          "subjects, the one-layer attention+MLP model answers questions about held-out facts.",
    config=ExtractionConfig, run=run_extraction, figures=figures_extraction,
    presets={"quick": {**_QUICK, "finetune.eval_every": 50}, "paper": _PAPER},
)

EXTRACTION_MULTIPLICITY = Experiment(
    name="extraction-multiplicity",
    claim="Held-out extraction accuracy rises with the pre-training multiplicity K.",
    config=MultiplicityConfig, run=run_multiplicity,
    figures=make_trend_figure("K", "multiplicity K", log_x=True),
    presets={"quick": {**_QUICK_SWEEP, "values": "1,2,4"}, "paper": _PAPER},
)

EXTRACTION_COVERAGE = Experiment(
    name="extraction-coverage",
    claim="Held-out extraction rises with fine-tuning coverage c of the relation-template "
          "directions; at zero coverage stored facts are inaccessible (near-chance Q&A).",
    config=CoverageConfig, run=run_coverage, figures=make_trend_figure("coverage", "coverage c"),
    presets={"quick": {**_QUICK_SWEEP, "values": "0,0.0625,0.25,0.5,1"}, "paper": _PAPER},
)

EXTRACTION_UNIVERSE = Experiment(
    name="extraction-universe",
    claim="At fixed K and fine-tuning size, held-out extraction falls as the relation-template "
          "universe |R| grows.",
    config=UniverseConfig, run=run_universe,
    figures=make_trend_figure("universe_size", "|R|", log_x=True),
    presets={"quick": {**_QUICK_SWEEP, "values": "2,4,8"},
             "paper": _PAPER},
)

EXTRACTION_LORA = Experiment(
    name="extraction-lora",
    claim="With enough coverage, rank-1 LoRA recovers held-out facts about as well as full "
          "fine-tuning, and the full fine-tuning update is dominated by one direction.",
    config=LoRAExpConfig, run=run_lora, figures=figures_lora,
    presets={"quick": {**_QUICK_SWEEP, "seeds": "0,1"}, "paper": _PAPER},
)

EXTRACTION_SCHEDULE = Experiment(
    name="extraction-schedule",
    claim="The learning-rate schedule (constant, warmup+cosine, cosine, step) shapes "
          "acquisition and extraction.",
    config=ScheduleConfig, run=run_schedule, figures=figures_schedule,
    presets={"quick": {**_QUICK_SWEEP, "seeds": "0,1", "pretrain.target_acc": 0.0,
                       "pretrain.eval_every": 250,
                       "pretrain.steps": 2500}, "paper": {**_PAPER, "pretrain.target_acc": 0.0}},
)

EXTRACTION_ATTENTION_ONLY = Experiment(
    name="extraction-attention-only",
    claim="Without the MLP, a one-head attention-only model fails to acquire or extract the "
          "facts that the attention+MLP model acquires and extracts.",
    config=AttentionOnlyConfig, run=run_attention_only, figures=figures_attention_only,
    presets={"quick": {**_QUICK_SWEEP, "seeds": "0,1"}, "paper": _PAPER},
)
