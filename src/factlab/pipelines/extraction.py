"""The knowledge-extraction pipeline (arXiv 2508.00901; our reconstruction, docs/extraction.md).

Draw a corpus (facts, K templates per fact, subjects split into P_train / P_val / P_test,
coverage set C) -> pre-train the one-layer attention+MLP model by next-token prediction at the
answer slot -> Q&A fine-tune (full, or LoRA) on P_train x C, once per learning rate of the
grid, each run keeping its best checkpoint on P_val -> keep the lr whose best P_val accuracy
is highest -> test Q&A on P_test. P_test is read only after every choice is made, so the
verdicts never read a split that selected anything.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F

from factlab.analysis.extraction_stats import relation_gaps, relation_nulls
from factlab.analysis.selection import best_on_validation
from factlab.config import ExperimentConfig, require
from factlab.models.lora import add_lora
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.probes import extraction as P
from factlab.probes.metrics import accuracy, forward_chunks
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.extraction_corpus import (
    Corpus,
    CorpusConfig,
    build_corpus,
    effective_finetune_size,
)
from factlab.train.loop import TrainConfig, train

Schedule = Literal["constant", "warmup_cosine", "cosine", "step"]
STORED_MIN = 0.99
"""Pre-training accuracy that counts as "acquired" (the 99% of our reconstruction)."""
IMPROVING_MARGIN = 0.005
"""Stored accuracy gained in the last quarter of a pre-training run's evaluations above
which the run counts as still improving at its budget (half a point: above eval noise)."""
PATTERN = "blocks.0.attn.hook_pattern"
WEIGHTS = {"W_Q": "blocks.0.attn.W_Q", "W_K": "blocks.0.attn.W_K", "W_V": "blocks.0.attn.W_V",
           "W_O": "blocks.0.attn.W_O", "W_in": "blocks.0.mlp.W_in",
           "W_out": "blocks.0.mlp.W_out"}


@dataclasses.dataclass
class ExtractionConfig(ExperimentConfig):
    """One pre-train -> tuned fine-tune -> test pipeline per seed (the sweeps add a grid)."""

    corpus: CorpusConfig = dataclasses.field(default_factory=CorpusConfig)
    model: OneLayerConfig = dataclasses.field(default_factory=lambda: OneLayerConfig(
        d_model=256, n_heads=1, d_head=256, d_mlp=1024))
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=1e-3, weight_decay=0.01, steps=20000, batch_size=256,
        eval_every=500, target_acc=0.99))
    finetune: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=3e-4, weight_decay=0.0, steps=2000, batch_size=256,
        eval_every=200))
    finetune_lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)  # full FT grid, chosen on P_val
    lora_lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)  # LoRA grid (B starts at zero)
    pretrain_schedule: Schedule = "constant"
    finetune_schedule: Schedule = "constant"
    method: Literal["full", "lora"] = "full"
    lora_rank: int = 1
    lora_alpha: float = 0.0  # 0 means alpha = rank
    lora_targets: tuple[str, ...] = ("W_Q",)  # any of W_Q, W_K, W_V, W_O, W_in, W_out
    confidence: float = P.HALLUCINATION_CONFIDENCE

    def check(self) -> None:
        super().check()
        require(self.lora_rank >= 1, "lora_rank", f"must be >= 1, got {self.lora_rank}")
        require(self.lora_alpha >= 0, "lora_alpha", "must be >= 0 (0 means alpha = rank)")
        for key in ("finetune_lrs", "lora_lrs"):
            lrs = getattr(self, key)
            require(len(lrs) >= 1 and all(lr > 0 for lr in lrs), key,
                    "needs at least one lr, all > 0")
        bad = [t for t in self.lora_targets if t not in WEIGHTS]
        require(not bad and len(self.lora_targets) >= 1, "lora_targets",
                f"each must be one of {', '.join(WEIGHTS)}; got {bad or 'nothing'}")
        require(0 < self.confidence <= 1, "confidence", "must be in (0, 1]")
        if "W_in" in self.lora_targets or "W_out" in self.lora_targets:
            require(self.model.d_mlp > 0, "lora_targets", "W_in/W_out need model.d_mlp > 0")

    def lr_grid(self) -> tuple[float, ...]:
        """The learning rates the fine-tuning of this config's `method` tries."""
        return self.lora_lrs if self.method == "lora" else self.finetune_lrs


def schedule_config(base: TrainConfig, name: Schedule) -> TrainConfig:
    """The named schedule on top of `base` (lr, steps, optimiser).

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


def make_model(cfg: ExtractionConfig, corpus: Corpus, seed: int,
               device: torch.device) -> OneLayerTransformer:
    """The one-layer model over the corpus vocabulary, logits over the n_rel * D answers."""
    gen = make_generator(derive_seed(seed, "model"))
    return OneLayerTransformer(cfg.model, corpus.vocab.size, corpus.n_outputs, gen).to(device)


def _with_pattern(model: OneLayerTransformer, tokens: torch.Tensor,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the attention pattern [n, H, 1, L], in chunks."""
    logits, cache = forward_chunks(lambda x: model.run_with_cache(x, names_filter=PATTERN),
                                   tokens)
    return logits, cache[PATTERN]


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
    logits, pattern = _with_pattern(model, tokens)
    v = corpus.vocab
    out = P.answer_metrics(logits, corpus.answers(rows), confidence=confidence)
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

    first_acquired: list[int] = []
    history: list[float] = []

    def on_eval(step: int, m: dict) -> None:
        history.append(m["acc"])
        if m["acc"] >= STORED_MIN and not first_acquired:
            first_acquired.append(step)
        if log is not None:
            log(step, m)

    result = train(model.parameters(), loss_fn, tcfg,
                   lambda: pretrain_probe(model, corpus, rows_all, eval_tokens, cfg.confidence),
                   on_eval=on_eval, show_progress=show_progress, desc="pretrain")
    result.raise_if_diverged()
    last = result.last_eval
    # still improving: the last quarter of the evaluations beat everything before it
    tail = max(1, len(history) // 4)
    improving = (result.stop_reason == "steps" and len(history) > tail
                 and max(history[-tail:]) > max(history[:-tail]) + IMPROVING_MARGIN)
    images = template_images(model, corpus)
    null, nulls = relation_nulls(images, make_generator(derive_seed(seed, "relation-null")),
                                 1 - 0.05 / len(images))
    per_rel = relation_gaps(images)
    return {"stored_acc": last["acc"], "pretrain_steps": result.steps,
            "pretrain_improving": improving, "rel_gap_null": null,
            "rel_gaps": per_rel.tolist(), "rel_gap_nulls": nulls.tolist(),
            "steps_to_acquire": first_acquired[0] if first_acquired else float("nan"),
            "acquired": last["acc"] >= STORED_MIN, "pretrain_stop": result.stop_reason,
            **{k: last[k] for k in ("mass_subject", "mass_template", "rel_cos_within",
                                    "rel_cos_across")}}


def val_accuracy(model: OneLayerTransformer, corpus: Corpus, device: torch.device) -> float:
    """Q&A accuracy on P_val x C, what every choice reads: the fine-tuning distribution on
    subjects never fine-tuned. Uncovered directions stay out of it, since a fine-tuner that
    could score them would in effect be fine-tuned on them (c = 0: every direction)."""
    rows = corpus.test_rows("val")
    if bool(corpus.covered.any()):
        rows = rows[corpus.covered[rows[:, 1], rows[:, 2]]]
    rows = rows.to(device)
    return accuracy(forward_chunks(model, corpus.qa_tokens(rows)), corpus.answers(rows))


def test_metrics(model: OneLayerTransformer, corpus: Corpus, seed: int, device: torch.device,
                 confidence: float) -> dict[str, float]:
    """Held-out Q&A accuracy on P_test (overall, 4 cells, covered/uncovered relation),
    hallucination, retention in pre-training format on P_test, Q&A accuracy on P_train."""
    rows = corpus.test_rows().to(device)
    tokens = corpus.qa_tokens(rows)
    logits, pattern = _with_pattern(model, tokens)
    labels = corpus.answers(rows)
    out = P.answer_metrics(logits, labels, prefix="test_", confidence=confidence)
    covered = corpus.covered.to(device)[rows[:, 1], rows[:, 2]]
    seen = corpus.seen_mask(rows[:, 0], rows[:, 1], rows[:, 2])
    rel_covered = corpus.covered.any(-1).to(device)[rows[:, 1]]
    groups = {"test_acc_cov_seen": covered & seen, "test_acc_cov_unseen": covered & ~seen,
              "test_acc_unc_seen": ~covered & seen, "test_acc_unc_unseen": ~covered & ~seen,
              "test_acc_rel_covered": rel_covered, "test_acc_rel_uncovered": ~rel_covered,
              "test_acc_seen": seen}
    out.update(P.accuracy_by_group(logits, labels, groups))
    out["test_hallucination_rel_uncovered"] = (
        P.hallucination_rate(logits[~rel_covered], labels[~rel_covered], confidence)
        if bool((~rel_covered).any()) else float("nan"))
    v = corpus.vocab
    out["test_mass_subject"] = P.attention_mass(pattern, v.is_subject(tokens))
    out["test_mass_template"] = P.attention_mass(pattern, v.is_template(tokens))
    # retained? the held-out facts in their pre-training format
    prow = corpus.pretrain_rows(corpus.test_subjects).to(device)
    ptok = corpus.pretrain_tokens(prow, make_generator(derive_seed(seed, "eval-retain")))
    out["retained_acc"] = accuracy(forward_chunks(model, ptok), corpus.answers(prow))
    frows = corpus.finetune.to(device)
    out["qa_train_acc"] = (accuracy(forward_chunks(model, corpus.qa_tokens(frows)),
                                    corpus.answers(frows)) if len(frows) else float("nan"))
    return out


def finetune_once(model: OneLayerTransformer, corpus: Corpus, cfg: ExtractionConfig, seed: int,
                  device: torch.device, lr: float,
                  log: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
    """Q&A fine-tuning of `model` in place at `lr`; the best P_val checkpoint is restored.

    Returns the validation numbers (best accuracy and its step, whether the budget ended while
    P_val was still improving) and, for full fine-tuning, the analysis of the update.
    """
    before = P.weight_snapshot(model)
    if cfg.method == "lora":
        add_lora(model, [WEIGHTS[t] for t in cfg.lora_targets], cfg.lora_rank,
                 cfg.lora_alpha or float(cfg.lora_rank),
                 gen=make_generator(derive_seed(seed, "lora")))
        model.to(device)
    rows_ft = corpus.finetune.to(device)
    gen = make_generator(derive_seed(seed, "finetune-batches"))
    tokens_ft, labels_ft = corpus.qa_tokens(rows_ft), corpus.answers(rows_ft)
    tcfg = dataclasses.replace(schedule_config(cfg.finetune, cfg.finetune_schedule), lr=lr,
                               target_acc=0.0)
    best: dict[str, Any] = {"acc": -1.0, "step": 0, "state": None}

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(0, len(rows_ft), (tcfg.batch_size,), generator=gen).to(device)
        return F.cross_entropy(model(tokens_ft[idx]), labels_ft[idx])

    def on_eval(step: int, m: dict) -> None:
        if m["acc"] > best["acc"]:  # ties keep the earlier (shorter) checkpoint
            best.update(acc=m["acc"], step=step,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
        if log is not None:
            log(step, {"val_acc": m["acc"], "lr": lr})

    # a diverging lr is one bad candidate of the grid, not an error: its best checkpoint
    # before the divergence is what validation compares
    result = train([p for p in model.parameters() if p.requires_grad], loss_fn, tcfg,
                   lambda: {"acc": val_accuracy(model, corpus, device)}, on_eval=on_eval,
                   desc="finetune")
    model.load_state_dict(best["state"])
    out: dict[str, Any] = {"lr": lr, "val_acc": best["acc"], "best_step": best["step"],
                           "finetune_steps": result.steps, "diverged": result.diverged,
                           "still_improving": best["step"] >= result.steps}
    if cfg.method == "full":
        out.update(P.update_analysis(before, P.weight_snapshot(model), model.W_E.detach(),
                                     corpus.vocab.QFMT, corpus.vocab.AFMT,
                                     make_generator(derive_seed(seed, "null"))))
    return out


def finetune(model: OneLayerTransformer, corpus: Corpus, cfg: ExtractionConfig, seed: int,
             device: torch.device, log: Callable[[int, dict], None] | None = None,
             ) -> tuple[OneLayerTransformer, dict[str, Any]]:
    """Fine-tune a copy of `model` at every lr of the grid; keep the best on P_val; test it.

    With no fine-tuning data (c = 0) the pre-trained model itself is tested.
    """
    out: dict[str, Any] = {"n_finetune_distinct": effective_finetune_size(corpus)}
    if len(corpus.finetune) == 0:
        out.update(lr=float("nan"), val_acc=val_accuracy(model, corpus, device), best_step=0,
                   finetune_steps=0, still_improving=False, lr_at_edge=False)
        out.update(test_metrics(model, corpus, seed, device, cfg.confidence))
        return model, out
    grid = cfg.lr_grid()
    runs = {}
    for lr in grid:
        tuned = copy.deepcopy(model)
        runs[lr] = (tuned, finetune_once(tuned, corpus, cfg, seed, device, lr, log))
    pick = best_on_validation({lr: r[1]["val_acc"] for lr, r in runs.items()})
    tuned, chosen = runs[pick]
    out.update(chosen, val_acc_by_lr=[runs[lr][1]["val_acc"] for lr in grid],
               lr_at_edge=len(grid) > 1 and pick in (grid[0], grid[-1]))
    out.update(test_metrics(tuned, corpus, seed, device, cfg.confidence))
    return tuned, out


def context_numbers(cfg: ExtractionConfig, corpus: Corpus) -> dict[str, float]:
    """Chance levels, |R|, achieved coverage and the bound's x = Ñ_f K² log|R| / (2|R|²)."""
    c = cfg.corpus
    n_f = effective_finetune_size(corpus)
    return {"universe": c.universe, "coverage_achieved": corpus.covered.float().mean().item(),
            "chance_block": 1 / c.n_answers, "chance": 1 / (c.n_relations * c.n_answers),
            "bound_x": P.bound_x(n_f, c.multiplicity, c.universe) if c.universe > 1 else 0.0}


def pretrained_model(cfg: ExtractionConfig, seed: int, device: torch.device,
                     log: Callable[[int, dict], None] | None = None,
                     ) -> tuple[OneLayerTransformer, dict[str, Any]]:
    """A pre-trained model for `seed` (its facts, templates and split do not depend on C)."""
    corpus = build_corpus(cfg.corpus, seed)
    model = make_model(cfg, corpus, seed, device)
    return model, pretrain(model, corpus, cfg, seed, device, log)


def finetune_copy(model: OneLayerTransformer, cfg: ExtractionConfig, seed: int,
                  device: torch.device, log: Callable[[int, dict], None] | None = None,
                  ) -> dict[str, Any]:
    """Tuned fine-tuning of copies of a pre-trained `model` under `cfg` (coverage, method)."""
    corpus = build_corpus(cfg.corpus, seed)
    _, out = finetune(model, corpus, cfg, seed, device, log)
    return {**out, **context_numbers(cfg, corpus)}


def run_pipeline(cfg: ExtractionConfig, seed: int, device: torch.device,
                 log: Callable[[str, int, dict], None] | None = None) -> dict[str, Any]:
    """Corpus -> model -> pre-train -> tuned fine-tune -> test, for one seed. Flat metrics."""
    pt_log = (lambda step, m: log("pretrain", step, m)) if log else None
    ft_log = (lambda step, m: log("finetune", step, m)) if log else None
    model, out = pretrained_model(cfg, seed, device, pt_log)
    out.update(finetune_copy(model, cfg, seed, device, ft_log))
    return out
