"""Knowledge acquisition and extraction (arXiv 2508.00901; specs/knowledge_extraction.md §1-§7).

Pipeline: draw a corpus (facts, K templates per fact, subject split, coverage set C) ->
pre-train the one-layer attention+MLP model by next-token prediction at the answer slot ->
Q&A fine-tune (full, or LoRA) on P_train x C -> test Q&A on the held-out subjects P_test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from factlab.config import ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext, Verdict
from factlab.models.lora import add_lora
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.probes import extraction as P
from factlab.report import band, paper_style, save_figure
from factlab.runtime import derive_seed, make_generator
from factlab.store import iter_jsonl
from factlab.tasks.corpus import Corpus, CorpusConfig, build_corpus, effective_finetune_size
from factlab.train import TrainConfig, train

Schedule = Literal["constant", "warmup_cosine", "cosine", "step"]
EVAL_CHUNK = 8192


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass
class ExtractionConfig(ExperimentConfig):
    """One pre-train -> fine-tune -> test pipeline (the sweeps add a grid and seeds)."""

    corpus: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    model: OneLayerConfig = dataclasses.field(default_factory=lambda: OneLayerConfig(
        d_model=256, n_heads=1, d_head=256, d_mlp=1024))
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=1e-3, weight_decay=0.01, steps=20000, batch_size=256,
        eval_every=500, target_acc=0.99))
    finetune: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=3e-4, weight_decay=0.0, steps=2000, batch_size=256,
        eval_every=200))
    pretrain_schedule: Schedule = "constant"
    finetune_schedule: Schedule = "constant"
    method: Literal["full", "lora"] = "full"
    lora_rank: int = 1
    lora_alpha: float = 0.0  # 0 means alpha = rank (spec §4)
    lora_targets: tuple[str, ...] = ("W_in",)  # any of W_Q, W_K, W_V, W_O, W_in, W_out
    lora_lr: float = 0.0  # 0 means finetune.lr; the zero-initialised B needs larger steps
    confidence: float = P.HALLUCINATION_CONFIDENCE
    seeds: tuple[int, ...] = (0,)  # the sweeps loop over these; `extraction` uses the first

    def check(self) -> None:
        super().check()
        require(len(self.seeds) >= 1 and min(self.seeds) >= 0, "seeds",
                "needs at least one seed, all >= 0")
        require(self.lora_rank >= 1, "lora_rank", f"must be >= 1, got {self.lora_rank}")
        require(self.lora_alpha >= 0, "lora_alpha", "must be >= 0 (0 means alpha = rank)")
        require(self.lora_lr >= 0, "lora_lr", "must be >= 0 (0 means finetune.lr)")
        bad = [t for t in self.lora_targets if t not in _WEIGHTS]
        require(not bad and len(self.lora_targets) >= 1, "lora_targets",
                f"each must be one of {', '.join(_WEIGHTS)}; got {bad or 'nothing'}")
        require(0 < self.confidence <= 1, "confidence", "must be in (0, 1]")
        if "W_in" in self.lora_targets or "W_out" in self.lora_targets:
            require(self.model.d_mlp > 0, "lora_targets", "W_in/W_out need model.d_mlp > 0")


_WEIGHTS = {"W_Q": "blocks.0.attn.W_Q", "W_K": "blocks.0.attn.W_K", "W_V": "blocks.0.attn.W_V",
            "W_O": "blocks.0.attn.W_O", "W_in": "blocks.0.mlp.W_in",
            "W_out": "blocks.0.mlp.W_out"}


def schedule_config(base: TrainConfig, name: Schedule) -> TrainConfig:
    """The spec §5 schedules on top of `base` (lr, steps, optimiser).

    warmup_cosine: linear warm-up over min(1000, 5%) of the steps, cosine to 10% of peak;
    cosine: no warm-up, cosine to 10%; step: x0.1 at 50% and again at 75% of the steps.
    """
    if name == "warmup_cosine":
        warm = min(1000, max(1, base.steps // 20))
        return dataclasses.replace(base, schedule="cosine", warmup_steps=warm, min_lr_ratio=0.1)
    if name == "cosine":
        return dataclasses.replace(base, schedule="cosine", warmup_steps=0, min_lr_ratio=0.1)
    if name == "step":
        return dataclasses.replace(base, schedule="step", warmup_steps=0,
                                   decay_at=(0.5, 0.75), decay_gamma=0.1)
    return dataclasses.replace(base, schedule="constant", warmup_steps=0)


# ----------------------------------------------------------------------------- pipeline


def make_model(cfg: ExtractionConfig, corpus: Corpus, seed: int,
               device: torch.device) -> OneLayerTransformer:
    """The one-layer model over the corpus vocabulary, logits over the n_rel * D answers."""
    gen = make_generator(derive_seed(seed, "model"))
    return OneLayerTransformer(cfg.model, corpus.vocab.size, corpus.n_outputs, gen).to(device)


@torch.no_grad()
def forward_chunks(model: OneLayerTransformer, tokens: torch.Tensor,
                   pattern: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits [n, n_out] (and the attention pattern [n, H, 1, L]) in chunks."""
    logits, patterns = [], []
    for start in range(0, len(tokens), EVAL_CHUNK):
        chunk = tokens[start:start + EVAL_CHUNK]
        if pattern:
            out, cache = model.run_with_cache(chunk, names_filter="blocks.0.attn.hook_pattern")
            patterns.append(cache["blocks.0.attn.hook_pattern"])
        else:
            out = model(chunk)
        logits.append(out)
    return torch.cat(logits), (torch.cat(patterns) if pattern else None)


def template_images(model: OneLayerTransformer, corpus: Corpus) -> torch.Tensor:
    """W_OV φ(T_{r,j}) summed over heads, [n_rel, tau, d]."""
    v = corpus.vocab
    attn = model.blocks[0].attn
    with torch.no_grad():
        x = model.W_E[v.template0:v.noise0]  # [|R|, d]
        img = torch.einsum("td,hde,hef->tf", x, attn.W_V, attn.W_O)
    return img.reshape(v.n_rel, v.tau, -1).cpu()


def pretrain_probe(model: OneLayerTransformer, corpus: Corpus, rows: torch.Tensor,
                   tokens: torch.Tensor, confidence: float) -> dict[str, float]:
    """Stored accuracy and loss on pre-training sequences, attention masses, relation cosine."""
    logits, pattern = forward_chunks(model, tokens, pattern=True)
    labels = corpus.answers(rows)
    v = corpus.vocab
    out = P.answer_metrics(logits, labels, confidence=confidence)
    out["mass_subject"] = P.attention_mass(pattern, v.is_subject(tokens))
    out["mass_template"] = P.attention_mass(pattern, v.is_template(tokens))
    cos = P.relation_direction_cosine(template_images(model, corpus))
    out["rel_cos_within"], out["rel_cos_across"] = cos["within"], cos["across"]
    return out


def pretrain(model: OneLayerTransformer, corpus: Corpus, cfg: ExtractionConfig, seed: int,
             device: torch.device, log: Callable[[int, dict], None] | None = None,
             show_progress: bool = False) -> dict[str, Any]:
    """Next-token pre-training at the answer slot until stored accuracy >= target or budget."""
    rows_all = corpus.pretrain_rows().to(device)
    gen = make_generator(derive_seed(seed, "pretrain-batches"))
    eval_tokens = corpus.pretrain_tokens(rows_all, make_generator(derive_seed(seed, "eval")))
    tcfg = schedule_config(cfg.pretrain, cfg.pretrain_schedule)

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(0, len(rows_all), (tcfg.batch_size,), generator=gen)
        rows = rows_all[idx.to(device)]
        tokens = corpus.pretrain_tokens(rows, gen)  # noise and positions fresh every draw
        return F.cross_entropy(model(tokens), corpus.answers(rows))

    def eval_fn() -> dict[str, float]:
        return pretrain_probe(model, corpus, rows_all, eval_tokens, cfg.confidence)

    first_acquired: list[int] = []

    def on_eval(step: int, m: dict) -> None:
        if m["acc"] >= STORED_MIN and not first_acquired:
            first_acquired.append(step)
        if log is not None:
            log(step, m)

    result = train(model.parameters(), loss_fn, tcfg, eval_fn, on_eval=on_eval,
                   show_progress=show_progress, desc="pretrain")
    result.raise_if_diverged()
    return {"stored_acc": result.last_eval["acc"], "pretrain_steps": result.steps,
            "steps_to_acquire": first_acquired[0] if first_acquired else float("nan"),
            "acquired": result.last_eval["acc"] >= STORED_MIN, "pretrain_stop": result.stop_reason,
            "mass_subject": result.last_eval["mass_subject"],
            "mass_template": result.last_eval["mass_template"],
            "rel_cos_within": result.last_eval["rel_cos_within"],
            "rel_cos_across": result.last_eval["rel_cos_across"]}


def test_metrics(model: OneLayerTransformer, corpus: Corpus, seed: int, device: torch.device,
                 confidence: float) -> dict[str, float]:
    """Held-out Q&A accuracy (overall, 4 cells, covered/uncovered relation), hallucination,
    retention in pre-training format on P_test, in-distribution Q&A accuracy on P_train."""
    rows = corpus.test_rows().to(device)
    tokens = corpus.qa_tokens(rows)
    logits, pattern = forward_chunks(model, tokens, pattern=True)
    labels = corpus.answers(rows)
    out = P.answer_metrics(logits, labels, prefix="test_", confidence=confidence)
    covered = corpus.covered.to(device)[rows[:, 1], rows[:, 2]]
    seen = corpus.seen_mask(rows[:, 0], rows[:, 1], rows[:, 2])
    rel_covered = corpus.covered.any(-1).to(device)[rows[:, 1]]
    out.update(P.accuracy_by_group(logits, labels, {
        "test_acc_cov_seen": covered & seen, "test_acc_cov_unseen": covered & ~seen,
        "test_acc_unc_seen": ~covered & seen, "test_acc_unc_unseen": ~covered & ~seen,
        "test_acc_rel_covered": rel_covered, "test_acc_rel_uncovered": ~rel_covered}))
    v = corpus.vocab
    out["test_mass_subject"] = P.attention_mass(pattern, v.is_subject(tokens))
    out["test_mass_template"] = P.attention_mass(pattern, v.is_template(tokens))
    # retained? the held-out facts in their pre-training format
    prow = corpus.pretrain_rows(corpus.test_subjects).to(device)
    ptok = corpus.pretrain_tokens(prow, make_generator(derive_seed(seed, "eval-retain")))
    plog, _ = forward_chunks(model, ptok)
    out["retained_acc"] = (plog.argmax(-1) == corpus.answers(prow)).float().mean().item()
    if len(corpus.finetune):
        frows = corpus.finetune.to(device)
        flog, _ = forward_chunks(model, corpus.qa_tokens(frows))
        out["qa_train_acc"] = (flog.argmax(-1) == corpus.answers(frows)).float().mean().item()
    else:
        out["qa_train_acc"] = float("nan")
    return out


def weight_snapshot(model: OneLayerTransformer) -> dict[str, torch.Tensor]:
    """Effective (LoRA included) trainable weights, detached copies."""
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    out = {"W_Q": attn.W_Q, "W_K": attn.W_K, "W_V": attn.W_V, "W_O": attn.W_O}
    if mlp is not None:
        out.update(W_in=mlp.W_in, W_out=mlp.W_out)
    return {k: v.detach().clone() for k, v in out.items()}


def update_analysis(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                    model: OneLayerTransformer, corpus: Corpus) -> dict[str, Any]:
    """σ1²/Σσ² of ΔW_in and ΔW_QK, and the alignment of ΔW_in's input side with the format."""
    out: dict[str, Any] = {}
    v = corpus.vocab
    phi = {"qfmt": model.W_E[v.QFMT].detach(), "afmt": model.W_E[v.AFMT].detach()}
    attn = model.blocks[0].attn
    ov = torch.einsum("hde,hef->df", attn.W_V, attn.W_O).detach()
    if "W_in" in after:
        spec = P.update_spectrum(after["W_in"] - before["W_in"])
        out["dW_in_top_energy"] = spec["top_energy"]
        out["dW_in_sv"] = [round(s, 6) for s in spec["sv"][:16]]
        u1 = spec["u1"]
        for name, vec in phi.items():
            out[f"dW_in_align_{name}"] = P.abs_cosine(u1, vec)
            out[f"dW_in_align_ov_{name}"] = P.abs_cosine(u1, vec @ ov)
        # the best-aligned among the format vectors, and a random-direction reference
        out["dW_in_align_format"] = max(out[k] for k in list(out) if k.startswith("dW_in_align_"))
        out["align_chance"] = 1 / math.sqrt(u1.numel())
    qk_b = torch.einsum("hde,hfe->df", before["W_Q"], before["W_K"])
    qk_a = torch.einsum("hde,hfe->df", after["W_Q"], after["W_K"])
    spec = P.update_spectrum(qk_a - qk_b)
    out["dW_QK_top_energy"] = spec["top_energy"]
    out["dW_QK_sv"] = [round(s, 6) for s in spec["sv"][:16]]
    out["dW_QK_align_afmt"] = P.abs_cosine(spec["u1"], phi["afmt"])
    return out


def finetune(model: OneLayerTransformer, corpus: Corpus, cfg: ExtractionConfig, seed: int,
             device: torch.device, log: Callable[[int, dict], None] | None = None,
             show_progress: bool = False) -> dict[str, Any]:
    """Q&A fine-tuning on the corpus' fine-tuning set (full or LoRA); then the test metrics."""
    before = weight_snapshot(model)
    if cfg.method == "lora":
        alpha = cfg.lora_alpha or float(cfg.lora_rank)
        add_lora(model, [_WEIGHTS[t] for t in cfg.lora_targets], cfg.lora_rank, alpha,
                 gen=make_generator(derive_seed(seed, "lora")))
        model.to(device)
    out: dict[str, Any] = {"n_finetune_distinct": effective_finetune_size(corpus)}
    rows_ft = corpus.finetune.to(device)
    if len(rows_ft):
        gen = make_generator(derive_seed(seed, "finetune-batches"))
        tokens_ft, labels_ft = corpus.qa_tokens(rows_ft), corpus.answers(rows_ft)
        tcfg = schedule_config(cfg.finetune, cfg.finetune_schedule)
        if cfg.method == "lora" and cfg.lora_lr > 0:
            tcfg = dataclasses.replace(tcfg, lr=cfg.lora_lr)

        def loss_fn(step: int) -> torch.Tensor:
            idx = torch.randint(0, len(rows_ft), (tcfg.batch_size,), generator=gen).to(device)
            return F.cross_entropy(model(tokens_ft[idx]), labels_ft[idx])

        def eval_fn() -> dict[str, float]:
            return test_metrics(model, corpus, seed, device, cfg.confidence)

        # curves only when someone logs them; the final test below runs either way
        result = train([p for p in model.parameters() if p.requires_grad], loss_fn, tcfg,
                       eval_fn if log else None,
                       on_eval=(lambda step, m: log(step, m)) if log else None,
                       show_progress=show_progress, desc="finetune")
        result.raise_if_diverged()
        out["finetune_steps"] = result.steps
    else:
        out["finetune_steps"] = 0
    out.update(test_metrics(model, corpus, seed, device, cfg.confidence))
    if cfg.method == "full" and len(rows_ft):
        out.update(update_analysis(before, weight_snapshot(model), model, corpus))
    return out


def run_pipeline(cfg: ExtractionConfig, seed: int, device: torch.device,
                 log: Callable[[str, int, dict], None] | None = None,
                 show_progress: bool = False) -> dict[str, Any]:
    """Corpus -> model -> pre-train -> fine-tune -> test, for one seed. All metrics, flat."""
    corpus = build_corpus(cfg.corpus, seed)
    model = make_model(cfg, corpus, seed, device)
    pt_log = (lambda step, m: log("pretrain", step, m)) if log else None
    ft_log = (lambda step, m: log("finetune", step, m)) if log else None
    out = pretrain(model, corpus, cfg, seed, device, pt_log, show_progress)
    out.update(finetune(model, corpus, cfg, seed, device, ft_log, show_progress))
    out.update(context_numbers(cfg, corpus))
    return out


def pretrained_model(cfg: ExtractionConfig, seed: int, device: torch.device,
                     log: Callable[[int, dict], None] | None = None,
                     ) -> tuple[OneLayerTransformer, dict[str, Any]]:
    """A pre-trained model for `seed` (its facts, templates and split do not depend on C)."""
    corpus = build_corpus(cfg.corpus, seed)
    model = make_model(cfg, corpus, seed, device)
    return model, pretrain(model, corpus, cfg, seed, device, log)


def finetune_copy(model: OneLayerTransformer, cfg: ExtractionConfig, seed: int,
                  device: torch.device) -> dict[str, Any]:
    """Fine-tune a copy of a pre-trained `model` under `cfg` (its coverage, method, schedule)."""
    import copy

    corpus = build_corpus(cfg.corpus, seed)
    out = finetune(copy.deepcopy(model), corpus, cfg, seed, device)
    out.update(context_numbers(cfg, corpus))
    return out


def context_numbers(cfg: ExtractionConfig, corpus: Corpus) -> dict[str, float]:
    """Chance levels, |R|, achieved coverage and the bound's x = Ñ_f K² log|R| / (2|R|²)."""
    c = cfg.corpus
    n_f = effective_finetune_size(corpus)
    return {"universe": c.universe, "coverage_achieved": corpus.covered.float().mean().item(),
            "chance_block": 1 / c.n_answers, "chance": 1 / (c.n_relations * c.n_answers),
            "bound_x": P.bound_x(n_f, c.multiplicity, c.universe) if c.universe > 1 else 0.0}


# ----------------------------------------------------------------------------- thresholds

STORED_MIN = 0.99
"""Pre-training accuracy that counts as "acquired" (the spec's 99%)."""

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
    rho = P.spearman(np.array(values), np.array(means))
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
    return Verdict(holds, ev, _scalar(out))


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
    return Verdict(ok, ev, metrics)


def run_universe(cfg: UniverseConfig, ctx: RunContext) -> Verdict:
    """S5: held-out extraction vs the template universe |R| = n_rel * tau at fixed K, Ñ_f."""
    values = [cfg.corpus.n_relations * t for t in cfg.values]
    rows = _sweep_cells(cfg, ctx, "universe_size", values, lambda c, u: dataclasses.replace(
        c, corpus=dataclasses.replace(c.corpus, n_templates=u // c.corpus.n_relations)))
    ok, ev, metrics = _trend(rows, "universe_size", values, -1, "|R|")
    return Verdict(ok, ev, metrics)


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
    return Verdict(ok and failure, ev, metrics)


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
    return Verdict(comparable and rank_one, ev, metrics)


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
    return Verdict(shaped, ev, metrics)


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
    return Verdict(fails and mlp_ok, ev, metrics)


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


# ----------------------------------------------------------------------------- figures


def _records(run_dir: Path, split: str) -> list[dict]:
    return [r for r in iter_jsonl(run_dir / "metrics.jsonl") if r["split"] == split]


def _by_seed(rows: list[dict], key: str, values: list, metric: str) -> np.ndarray:
    seeds = sorted({r["seed"] for r in rows})
    return np.array([[next((r[metric] for r in rows if r[key] == v and r["seed"] == s
                            and r.get(metric) is not None), np.nan) for v in values]
                     for s in seeds], float)


def _bound_panel(ax: Any, rows: list[dict]) -> None:
    x = np.array([r["bound_x"] for r in rows])
    err = np.clip(1 - np.array([r["test_acc"] for r in rows]), 1e-4, 1)
    ax.scatter(x, err, s=8, c="C0")
    fit = P.fit_log_error(x, 1 - err)
    if np.isfinite(fit["b"]):
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, np.exp(fit["a"] - fit["b"] * xs), "k--", lw=1,
                label=f"exp({fit['a']:.2f} - {fit['b']:.3g} x), R²={fit['r2']:.2f}")
        ax.legend()
    ax.set(yscale="log", xlabel=r"x = $\tilde N_f K^2 \log|R| / (2|R|^2)$",
           ylabel="held-out error")


def make_trend_figure(key: str, xlabel: str, log_x: bool = False,
                      ) -> Callable[[Path], list[Path]]:
    """Held-out accuracy vs the knob (seed bands) and the bound collapse panel."""

    def figures(run_dir: Path) -> list[Path]:
        rows = _records(run_dir, "cell")
        if not rows:
            return []
        with paper_style():
            import matplotlib.pyplot as plt

            fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.75, 2.6))
            modes = sorted({r.get("mode", "") for r in rows})
            for mode in modes:
                sel = [r for r in rows if r.get("mode", "") == mode]
                values = sorted({r[key] for r in sel})
                tag = f" ({mode} C)" if mode else ""
                band(ax, values, _by_seed(sel, key, values, "test_acc"), "held-out Q&A" + tag)
                if mode in ("", modes[0]):
                    band(ax, values, _by_seed(sel, key, values, "stored_acc"), "stored",
                         ls=":")
                    band(ax, values, _by_seed(sel, key, values, "retained_acc"),
                         "retained (P_test, pre-train format)", ls="--")
            ax.axhline(rows[0]["chance_block"], color="gray", lw=0.8, label="chance 1/D")
            ax.set(xlabel=xlabel, ylabel="accuracy", ylim=(0, 1.02))
            if log_x:
                ax.set_xscale("log", base=2)
            ax.legend(fontsize=6)
            _bound_panel(bx, [r for r in rows if r.get("mode", "") == modes[0]])
            fig.subplots_adjust(wspace=0.35)
            return [save_figure(fig, run_dir, "trend")]

    return figures


def figures_extraction(run_dir: Path) -> list[Path]:
    """Pre-training and fine-tuning curves, and the four held-out cells."""
    pre, ft, final = (_records(run_dir, s) for s in ("pretrain", "finetune", "final"))
    if not pre:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(6.75, 2.3))
        steps = [r["step"] for r in pre]
        for key, label in [("acc", "stored acc"), ("mass_subject", "attn on s"),
                           ("mass_template", "attn on T"), ("rel_cos_within", "rel cos (within)"),
                           ("rel_cos_across", "rel cos (across)")]:
            ax.plot(steps, [r[key] for r in pre], label=label)
        ax.set(xlabel="pre-training step", title="acquisition")
        ax.legend(fontsize=5)
        if ft:
            steps = [r["step"] for r in ft]
            for key, label in [("test_acc", "held-out Q&A"), ("qa_train_acc", "fine-tuned Q&A"),
                               ("retained_acc", "retained"), ("test_hallucination",
                                                              "hallucination")]:
                bx.plot(steps, [r[key] for r in ft], label=label)
            bx.set(xlabel="fine-tuning step", title="extraction", ylim=(0, 1.02))
            bx.legend(fontsize=5)
        if final:
            f = final[-1]
            cells = ["cov_seen", "cov_unseen", "unc_seen", "unc_unseen"]
            vals = [f.get(f"test_acc_{c}") for c in cells]
            cx.bar(range(4), [v if v is not None else 0 for v in vals], color="C2")
            cx.set_xticks(range(4), ["C,J", "C,¬J", "¬C,J", "¬C,¬J"], fontsize=6)
            cx.axhline(f["chance_block"], color="gray", lw=0.8)
            cx.set(ylim=(0, 1), title="held-out cells")
        return [save_figure(fig, run_dir, "extraction")]


def figures_lora(run_dir: Path) -> list[Path]:
    """Held-out accuracy vs LoRA rank (full FT dashed) and the full-FT update spectra."""
    rows = _records(run_dir, "cell")
    if not rows:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.75, 2.6))
        fig.subplots_adjust(wspace=0.35)
        for i, c in enumerate(sorted({r["coverage"] for r in rows})):
            sel = [r for r in rows if r["coverage"] == c]
            ranks = sorted({r["rank"] for r in sel if r["rank"] > 0})
            band(ax, ranks, _by_seed(sel, "rank", ranks, "test_acc"), f"LoRA, c={c:g}",
                 color=f"C{i}")
            ax.axhline(np.mean([r["test_acc"] for r in sel if r["rank"] == 0]), ls="--",
                       color=f"C{i}", lw=1, label=f"full FT, c={c:g}")
        ranks = sorted({r["rank"] for r in rows if r["rank"] > 0})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(k) for k in ranks])
        ax.minorticks_off()
        ax.set(xlabel="LoRA rank", ylabel="held-out Q&A acc", ylim=(0, 1.02))
        ax.legend(fontsize=6)
        full = [r for r in rows if r["rank"] == 0 and r.get("dW_in_sv")]
        for key, ls in [("dW_in_sv", "-"), ("dW_QK_sv", "--")]:
            for j, r in enumerate(full[:3]):
                sv = np.array(r.get(key) or [np.nan])
                bx.plot(np.arange(1, len(sv) + 1), sv / sv[0], ls=ls, color=f"C{j}", marker=".",
                        label=f"{key[:-3]} (c={r['coverage']:g}, seed {r['seed']})")
        bx.set(yscale="log", xlabel="index i", ylabel=r"$\sigma_i / \sigma_1$",
               title="full fine-tuning update")
        bx.legend(fontsize=5)
        return [save_figure(fig, run_dir, "lora")]


def figures_schedule(run_dir: Path) -> list[Path]:
    """Pre-training accuracy curves per schedule (first seed) and held-out accuracy bars."""
    pre, rows = _records(run_dir, "pretrain"), _records(run_dir, "cell")
    if not rows:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, (ax, bx) = plt.subplots(1, 2, figsize=(6.75, 2.6))
        fig.subplots_adjust(wspace=0.35)
        seed0 = min(r["seed"] for r in rows)
        for name in dict.fromkeys(r["schedule"] for r in rows):
            curve = [r for r in pre if r["schedule"] == name and r["seed"] == seed0]
            ax.plot([r["step"] for r in curve], [r["acc"] for r in curve], label=name)
        ax.set(xlabel="pre-training step", ylabel="stored acc", title=f"seed {seed0}")
        ax.legend(fontsize=6)
        names = list(dict.fromkeys(r["schedule"] for r in rows))
        for k, phase in enumerate(("pretrain", "finetune")):
            vals = [[r["test_acc"] for r in rows if r["phase"] == phase and r["schedule"] == n]
                    for n in names]
            means = [np.mean(v) for v in vals]
            err = [[m - min(v) for m, v in zip(means, vals)], [max(v) - m for m, v in
                                                               zip(means, vals)]]
            bx.bar(np.arange(len(names)) + 0.4 * k, means, 0.4, yerr=err,
                   label=f"schedule on {phase}")
        bx.set_xticks(np.arange(len(names)) + 0.2, names, fontsize=6)
        bx.set(ylabel="held-out Q&A acc", ylim=(0, 1))
        bx.legend(fontsize=6)
        return [save_figure(fig, run_dir, "schedule")]


def figures_attention_only(run_dir: Path) -> list[Path]:
    """Stored and held-out accuracy per model variant (seed min-max as error bars)."""
    rows = _records(run_dir, "cell")
    if not rows:
        return []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        names = list(dict.fromkeys(r["variant"] for r in rows))
        for k, key in enumerate(("stored_acc", "test_acc")):
            vals = [[r[key] for r in rows if r["variant"] == n] for n in names]
            means = [np.mean(v) for v in vals]
            err = [[m - min(v) for m, v in zip(means, vals)], [max(v) - m for m, v in
                                                               zip(means, vals)]]
            ax.bar(np.arange(len(names)) + 0.4 * k, means, 0.4, yerr=err,
                   label="stored" if k == 0 else "held-out Q&A")
        ax.set_xticks(np.arange(len(names)) + 0.2, names, fontsize=7)
        ax.set(ylabel="accuracy", ylim=(0, 1.02))
        ax.legend(fontsize=6)
        return [save_figure(fig, run_dir, "attention_only")]


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
