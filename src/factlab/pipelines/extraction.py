"""The knowledge-extraction pipeline (arXiv 2508.00901; specs/knowledge_extraction.md §1-§7).

Draw a corpus (facts, K templates per fact, subject split, coverage set C) -> pre-train the
one-layer attention+MLP model by next-token prediction at the answer slot -> Q&A fine-tune
(full, or LoRA) on P_train x C -> test Q&A on the held-out subjects P_test. The experiments in
`factlab.experiments.extraction` compose these steps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F

from factlab.config import ExperimentConfig, require
from factlab.models.lora import add_lora
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.probes import extraction as P
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.extraction_corpus import Corpus, CorpusConfig, build_corpus, effective_finetune_size
from factlab.train.loop import TrainConfig, train

Schedule = Literal["constant", "warmup_cosine", "cosine", "step"]
EVAL_CHUNK = 8192
STORED_MIN = 0.99
"""Pre-training accuracy that counts as "acquired" (the spec's 99%)."""


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


