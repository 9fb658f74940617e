"""Real models: extraction on a local HF causal LM with PopQA, and the bioS realism tier.

popqa-extraction (specs/knowledge_extraction.md §9.4; 2508 claims 3-4). A local GPT-2 or Llama
checkpoint is continued-pre-trained on K declarative statements of every PopQA fact, then Q&A
fine-tuned (full or LoRA) on P_train subjects of the covered relation types, and asked the
PopQA questions of the held-out P_test subjects. Judged by held-out accuracy (PopQA rule):
with uncovered relations present, the claim holds when covered - uncovered >= EXTRACTION_MARGIN;
at coverage 1 (nothing uncovered), when covered-after - before-fine-tuning >= EXTRACTION_MARGIN.
Why 0.10: on a few hundred held-out questions the binomial standard error of a difference is
about 0.04, so 0.10 is a clear effect rather than noise, and far below the paper's reported gaps.

bios (Physics 3.1 §8): see `BIOS_DOC` below.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import torch

from factlab.analysis.verdicts import Verdict, decide, inconclusive
from factlab.config import ConfigError, ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.models.gpt import GPT, GPTConfig
from factlab.models.hf import check_model_dir, load_causal_lm
from factlab.pipelines import popqa as P
from factlab.pipelines.popqa import N_TEMPLATES
from factlab.report.style import paper_style, save_figure
from factlab.runtime import derive_seed, make_generator
from factlab.store.run_dir import iter_jsonl
from factlab.tasks.bios import ATTRIBUTES, PAD, Bios, BiosConfig, pad_batch, parse_augment, qa_batch
from factlab.tasks.popqa import fixture_path, load_popqa
from factlab.train.loop import EpochBatches, TrainConfig, train

EXTRACTION_MARGIN = 0.10


@dataclasses.dataclass
class PopQAExtractionConfig(ExperimentConfig):
    """Model and data paths, the protocol knobs (K, coverage, fine-tuning) and the schedules."""

    model: str = ""  # a local HF causal-LM directory (save_pretrained output); required
    data: str = ""  # a PopQA TSV; empty = the shipped synthetic fixture
    finetune: Literal["full", "lora"] = "full"
    rank: int = 8  # LoRA rank (alpha = rank)
    target_modules: tuple[str, ...] = ()  # LoRA targets; empty = c_attn (GPT-2) / q_proj,v_proj
    coverage: float = 0.5  # fraction of the relation types present that Q&A fine-tuning covers
    K: int = 2  # statements per fact in continued pre-training (<= 4); 0 = protocol B
    test_frac: float = 0.5  # fraction of subjects held out (P_test)
    max_rows: int = 0  # use a seeded subset of this many rows; 0 = all
    fewshot_k: int = 15  # demonstrations for the base model's few-shot baseline; 0 = skip it
    max_new_tokens: int = 15
    n_pop_bins: int = 4  # equal-count s_pop bins of the held-out questions (paper: 10)
    pretrain: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=1e-4, steps=400, batch_size=16, eval_every=50, grad_clip=1.0))
    qa: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=1e-4, steps=300, batch_size=16, eval_every=50, grad_clip=1.0))

    def check(self) -> None:
        super().check()

        if self.model:
            check_model_dir(self.model)
        if self.data:
            require(Path(self.data).expanduser().is_file(), "data",
                    f"no such file {self.data!r}")
        require(0 <= self.K <= N_TEMPLATES, "K", f"must be in 0..{N_TEMPLATES}, got {self.K}")
        require(0 <= self.coverage <= 1, "coverage", f"must be in [0, 1], got {self.coverage}")
        require(0 < self.test_frac < 1, "test_frac", f"must be in (0, 1), got {self.test_frac}")
        require(self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        require(self.max_rows >= 0, "max_rows", "must be >= 0")
        require(self.fewshot_k >= 0, "fewshot_k", "must be >= 0")
        require(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        require(self.n_pop_bins >= 1, "n_pop_bins", "must be >= 1")


def _log_train(ctx: RunContext, split: str):
    def on_eval(step: int, metrics: dict[str, float]) -> None:
        if "train_loss" in metrics:
            ctx.log(step, split, loss=metrics["train_loss"])
    return on_eval


def run_popqa(cfg: PopQAExtractionConfig, ctx: RunContext) -> Verdict:
    """Load, pre-train on statements, fine-tune on covered Q&A, test held-out subjects."""

    if not cfg.model:
        raise ConfigError("model: required; set model=PATH to a local HF causal LM directory")
    rows = load_popqa(cfg.data or fixture_path())
    if cfg.max_rows and cfg.max_rows < len(rows):
        keep = sorted(torch.randperm(len(rows), generator=make_generator(
            derive_seed(cfg.seed, "rows")))[:cfg.max_rows].tolist())
        rows = [rows[i] for i in keep]
    hf = load_causal_lm(cfg.model, device=ctx.device)
    split = P.make_split(rows, cfg.test_frac, cfg.coverage,
                         make_generator(derive_seed(cfg.seed, "split")))
    train_rows = [rows[i] for i in split.train]
    test_rows = [rows[i] for i in split.test]
    ft_rows = [r for r in train_rows if r.prop_id in split.covered]
    require(len(ft_rows) > 0 or cfg.coverage == 0, "coverage",
            "no P_train question falls in the covered relations; raise coverage or add rows")
    metrics: dict[str, Any] = {"n_rows": len(rows), "n_test": len(test_rows),
                               "n_finetune": len(ft_rows), "covered": sorted(split.covered)}
    net = hf.model

    # 0. the base model, PopQA-style few-shot (demonstrations from P_train rows only)
    if cfg.fewshot_k:
        prompts = P.fewshot_prompts(test_rows, train_rows, cfg.fewshot_k, derive_seed(cfg.seed, "fs"))
        res = P.evaluate_qa(net, hf, test_rows, prompts, cfg.max_new_tokens)
        metrics["fewshot_base_acc"] = P.mean(res["correct"])
        ctx.log(0, "eval", stage="base_fewshot", acc=metrics["fewshot_base_acc"],
                acc_norm=P.mean(res["correct_norm"]))

    retained: list[bool] = []
    # 1-2. continued pre-training on K statements of every fact (all subjects)
    if cfg.K > 0:
        J = P.fact_templates(len(rows), cfg.K, make_generator(derive_seed(cfg.seed, "J")))
        corpus = P.make_corpus(rows, J)
        batch = P.encode_pairs(hf, corpus, loss_on_prompt=True, end=".")
        P.train_lm(net, batch, cfg.pretrain, make_generator(derive_seed(cfg.seed, "pt")),
                   ctx.device, _log_train(ctx, "pretrain"), ctx.show_progress, "pretrain")
        # retained? complete the first statement of each held-out fact
        prefixes = [P.declarative(rows[i], J[i, 0].item())[0] for i in split.test]
        res = P.evaluate_qa(net, hf, test_rows, prefixes, cfg.max_new_tokens)
        retained = res["correct"]
        metrics["retention_acc"] = P.mean(retained)
        ctx.log(cfg.pretrain.steps, "eval", stage="retention", acc=metrics["retention_acc"],
                acc_norm=P.mean(res["correct_norm"]))

    # held-out Q&A before fine-tuning (the format is new to the model)
    qa_test = P.qa_prompts(test_rows)
    res = P.evaluate_qa(net, hf, test_rows, qa_test, cfg.max_new_tokens)
    metrics["qa_before_acc"] = P.mean(res["correct"])
    ctx.log(0, "eval", stage="qa_before", acc=metrics["qa_before_acc"],
            acc_norm=P.mean(res["correct_norm"]))

    # 3. Q&A fine-tuning on covered relations of P_train subjects
    if ft_rows:
        if cfg.finetune == "lora":
            net = P.lora_wrap(net, cfg.rank, cfg.target_modules)
        n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        metrics["trainable_params"] = n_params
        batch = P.encode_pairs(hf, [(P.qa_prompt(r.question), r.obj) for r in ft_rows],
                               loss_on_prompt=False)
        P.train_lm(net, batch, cfg.qa, make_generator(derive_seed(cfg.seed, "qa")),
                   ctx.device, _log_train(ctx, "qa_train"), ctx.show_progress, "qa")
        res = P.evaluate_qa(net, hf, ft_rows, P.qa_prompts(ft_rows), cfg.max_new_tokens)
        metrics["train_qa_acc"] = P.mean(res["correct"])
        ctx.log(cfg.qa.steps, "eval", stage="train_qa", acc=metrics["train_qa_acc"])

    # 4. held-out Q&A, bucketed
    res = P.evaluate_qa(net, hf, test_rows, qa_test, cfg.max_new_tokens)
    covered = [r.prop_id in split.covered for r in test_rows]
    ok, ok_norm = res["correct"], res["correct_norm"]
    pick = lambda values, flag: [v for v, c in zip(values, covered) if c == flag]
    metrics.update(
        test_acc=P.mean(ok), test_acc_norm=P.mean(ok_norm),
        test_acc_covered=P.mean(pick(ok, True)), test_acc_uncovered=P.mean(pick(ok, False)),
        n_test_covered=sum(covered), n_test_uncovered=len(covered) - sum(covered))
    if retained:  # the stylised hallucination: statement retained, question answered wrong
        for flag, name in ((True, "covered"), (False, "uncovered")):
            kept = [not o for o, r, c in zip(ok, retained, covered) if r and c == flag]
            metrics[f"inaccessible_{name}"] = P.mean(kept)
    ctx.log(cfg.qa.steps, "eval", stage="qa_after", acc=metrics["test_acc"],
            acc_norm=metrics["test_acc_norm"], acc_covered=metrics["test_acc_covered"],
            acc_uncovered=metrics["test_acc_uncovered"])
    bins = P.pop_bins(test_rows, cfg.n_pop_bins)
    for b in range(cfg.n_pop_bins):
        idx = [i for i, x in enumerate(bins) if x == b]
        if not idx:
            continue
        pops = sorted(test_rows[i].s_pop for i in idx)
        ctx.log(b, "pop_bin", s_pop_median=pops[len(pops) // 2], n=len(idx),
                acc=P.mean([ok[i] for i in idx]),
                acc_covered=P.mean([ok[i] for i in idx if covered[i]]),
                acc_uncovered=P.mean([ok[i] for i in idx if not covered[i]]))
    for prop in sorted({r.prop_id for r in test_rows}):
        idx = [i for i, r in enumerate(test_rows) if r.prop_id == prop]
        ctx.log(prop, "relation", covered=prop in split.covered, n=len(idx),
                acc=P.mean([ok[i] for i in idx]))
    return _popqa_verdict(metrics)


def _nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _popqa_verdict(m: dict[str, Any]) -> Verdict:
    cov, unc, before = m["test_acc_covered"], m["test_acc_uncovered"], m["qa_before_acc"]
    m["margin"] = EXTRACTION_MARGIN
    if _nan(cov):
        return inconclusive("no held-out question in a covered relation (coverage too low "
                            "or too few rows); nothing to judge", metrics=m)
    if not _nan(unc):
        gap = cov - unc
        evidence = (f"held-out accuracy covered {cov:.3f} vs uncovered {unc:.3f} "
                    f"(gap {gap:+.3f}, needs >= {EXTRACTION_MARGIN}); before fine-tuning "
                    f"{before:.3f}")
    else:
        gap = cov - before
        evidence = (f"held-out accuracy after Q&A fine-tuning {cov:.3f} vs before {before:.3f} "
                    f"(gain {gap:+.3f}, needs >= {EXTRACTION_MARGIN}; coverage 1, nothing "
                    "uncovered)")
    if "retention_acc" in m:
        evidence += f"; statements retained on P_test {m['retention_acc']:.3f}"
    return decide(gap >= EXTRACTION_MARGIN, evidence, m)


def popqa_figures(run_dir: Path) -> list[Path]:
    """Held-out accuracy by stage, and by s_pop bin split by covered/uncovered relation."""
    records = list(iter_jsonl(run_dir / "metrics.jsonl"))
    stages = [r for r in records if r["split"] == "eval"]
    bins = [r for r in records if r["split"] == "pop_bin"]
    if not stages:
        return []
    out = []
    with paper_style():
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        labels, values = [], []
        for r in stages:
            if r["stage"] == "qa_after":
                for key in ("acc_covered", "acc_uncovered"):
                    if r.get(key) is not None and not _nan(r[key]):
                        labels.append("after FT\n" + key.split("_")[1])
                        values.append(r[key])
            else:
                labels.append(r["stage"].replace("_", "\n"))
                values.append(r["acc"])
        ax.bar(range(len(values)), values, color="tab:blue")
        ax.set_xticks(range(len(values)), [t.replace("\n", " ") for t in labels], fontsize=6,
                      rotation=30, ha="right")
        ax.set(ylim=(0, 1), ylabel="accuracy (PopQA rule)", title="popqa-extraction")
        out.append(save_figure(fig, run_dir, "stages"))
        if bins:
            fig, ax = plt.subplots()
            x = [r["s_pop_median"] for r in bins]
            for key, label in (("acc_covered", "covered"), ("acc_uncovered", "uncovered"),
                               ("acc", "all")):
                y = [float("nan") if r.get(key) is None else r[key] for r in bins]
                ax.plot(x, y, marker="o", ms=3, label=label)
            ax.set(xscale="log", ylim=(-0.02, 1.02), xlabel="median s_pop of bin",
                   ylabel="held-out accuracy", title="accuracy by popularity")
            ax.legend()
            out.append(save_figure(fig, run_dir, "popularity"))
    return out


POPQA_EXTRACTION = Experiment(
    name="popqa-extraction",
    claim="On a real causal LM, Q&A fine-tuning on a subset of subjects makes the held-out "
          "subjects' facts extractable for the covered relation types (2508, relation covering).",
    config=PopQAExtractionConfig,
    run=run_popqa,
    figures=popqa_figures,
    presets={"quick": {}, "paper": {"n_pop_bins": 10, "pretrain.steps": 3000, "qa.steps": 2000}},
)


# ---------------------------------------------------------------------------------- bioS tier

BIOS_GAP = 0.30
BIOS_DOC = """bios (Physics 3.1 §8; specs/knowledge_extraction.md §8.3). A small GPT is pre-trained
on the biographies of all people under each augmentation, then Q&A fine-tuned on P_train and
asked about P_test (exact match of the whole answer, greedy = teacher-forced argmax). The claim
holds when held-out accuracy of the last augmentation (multi5+permute) exceeds the first
(single) by >= BIOS_GAP = 0.30. Why 0.30: the paper reports 96.6% vs 9.7% at 124M parameters;
"far higher" should survive a tiny CPU model, but a gap of under 30 points would not be the
qualitative jump the paper describes."""


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


@torch.no_grad()
def _qa_exact(model, x: torch.Tensor, y: torch.Tensor, device: torch.device,
              chunk: int = 512) -> torch.Tensor:
    """Per item: every answer token is the argmax (= greedy decoding reproduces the answer)."""
    model.eval()
    out = []
    for s in range(0, x.shape[0], chunk):
        xb, yb = x[s:s + chunk].to(device), y[s:s + chunk].to(device)
        pred = model(xb).argmax(-1)
        out.append(((pred == yb) | (yb == -100)).all(-1).cpu())
    return torch.cat(out)


def _lm_loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)


def _train_seq(model, x: torch.Tensor, y: torch.Tensor, tcfg: TrainConfig, seed: int,
               ctx: RunContext, split: str, aug: str, eval_fn=None) -> None:
    """Seeded shuffled minibatch epochs over (x, y) with the shared training loop."""

    batches = EpochBatches(x.shape[0], tcfg.batch_size, make_generator(seed))

    def loss_fn(step: int) -> torch.Tensor:
        idx = batches(step)
        xb, yb = x[idx], y[idx]
        width = int((yb != -100).nonzero()[:, 1].max()) + 1  # trim all-padding columns
        model.train()
        return _lm_loss(model, xb[:, :width].to(ctx.device), yb[:, :width].to(ctx.device))

    def on_eval(step: int, metrics: dict[str, float]) -> None:
        if metrics:
            ctx.log(step, split, augment=aug, **metrics)

    result = train(model.parameters(), loss_fn, tcfg, eval_fn, on_eval,
                   show_progress=ctx.show_progress, desc=f"{split} {aug}")
    result.raise_if_diverged()


def run_bios(cfg: BiosExperimentConfig, ctx: RunContext) -> Verdict:
    """For each augmentation: pre-train a fresh GPT on bios, Q&A fine-tune on P_train, test."""

    bios = Bios(cfg.bios, make_generator(derive_seed(cfg.seed, "bios")))
    N = cfg.bios.n_people
    perm = torch.randperm(N, generator=make_generator(derive_seed(cfg.seed, "split"))).tolist()
    n_test = max(1, round(cfg.test_frac * N))
    test, train_people = sorted(perm[:n_test]), sorted(perm[n_test:])
    pad = bios.stoi[PAD]
    xq_tr, yq_tr, _ = qa_batch(bios.qa(train_people), pad)
    xq_te, yq_te, att_te = qa_batch(bios.qa(test), pad)
    results: dict[str, dict[str, float]] = {}
    for aug in cfg.augments:
        entries = bios.entries(range(N), aug, make_generator(derive_seed(cfg.seed, "entries", aug)))
        x, y = pad_batch(entries, None, pad)
        mcfg = dataclasses.replace(cfg.model, d_vocab=len(bios.vocab),
                                   n_ctx=max(cfg.model.n_ctx, x.shape[1], xq_tr.shape[1]))
        model = GPT(mcfg, make_generator(derive_seed(cfg.seed, "init", aug))).to(ctx.device)
        first_x, first_y = x[: min(len(entries), 512)], y[: min(len(entries), 512)]

        def bio_eval(model=model, first_x=first_x, first_y=first_y) -> dict[str, float]:
            with torch.no_grad():
                model.eval()
                logits = model(first_x.to(ctx.device))
                hit = (logits.argmax(-1).cpu() == first_y) | (first_y == -100)
            return {"bio_token_acc": float(hit[first_y != -100].float().mean())}

        _train_seq(model, x, y, cfg.pretrain, derive_seed(cfg.seed, "pt", aug), ctx,
                   "pretrain", aug, bio_eval)
        pre_test = float(_qa_exact(model, xq_te, yq_te, ctx.device).float().mean())
        _train_seq(model, xq_tr, yq_tr, cfg.qa, derive_seed(cfg.seed, "qa", aug), ctx,
                   "qa_train", aug)
        ok_tr = _qa_exact(model, xq_tr, yq_tr, ctx.device)
        ok_te = _qa_exact(model, xq_te, yq_te, ctx.device)
        row = {"n_entries": len(entries), "bio_token_acc": bio_eval()["bio_token_acc"],
               "qa_test_before_ft": pre_test, "qa_train_acc": float(ok_tr.float().mean()),
               "qa_test_acc": float(ok_te.float().mean())}
        for k, name in enumerate(ATTRIBUTES):
            row[f"qa_test_acc_{name}"] = float(ok_te[att_te == k].float().mean())
        results[aug] = row
        ctx.log(cfg.qa.steps, "result", augment=aug, **row)
    base, rich = cfg.augments[0], cfg.augments[-1]
    gap = results[rich]["qa_test_acc"] - results[base]["qa_test_acc"]
    metrics = {"results": results, "gap": gap, "threshold": BIOS_GAP}
    evidence = (f"held-out Q&A accuracy {rich} {results[rich]['qa_test_acc']:.3f} vs {base} "
                f"{results[base]['qa_test_acc']:.3f} (gap {gap:+.3f}, needs >= {BIOS_GAP}); "
                f"train Q&A {results[rich]['qa_train_acc']:.3f} / "
                f"{results[base]['qa_train_acc']:.3f}; bio token acc "
                f"{results[rich]['bio_token_acc']:.3f} / {results[base]['bio_token_acc']:.3f}")
    return decide(gap >= BIOS_GAP, evidence, metrics)


def bios_figures(run_dir: Path) -> list[Path]:
    """Held-out Q&A accuracy per augmentation and attribute; pre-training loss curves."""

    records = list(iter_jsonl(run_dir / "metrics.jsonl"))
    res = [r for r in records if r["split"] == "result"]
    if not res:
        return []
    out = []
    with paper_style():
        import matplotlib.pyplot as plt
        import numpy as np

        fig, ax = plt.subplots(figsize=(6.75, 2.4))
        width = 0.8 / len(res)
        for i, r in enumerate(res):
            vals = [r[f"qa_test_acc_{a}"] for a in ATTRIBUTES] + [r["qa_test_acc"]]
            ax.bar(np.arange(len(vals)) + i * width, vals, width, label=r["augment"])
        ax.set_xticks(np.arange(len(ATTRIBUTES) + 1) + 0.4 - width / 2,
                      [a.replace("_", " ") for a in ATTRIBUTES] + ["all"], fontsize=7)
        ax.set(ylim=(0, 1), ylabel="held-out Q&A accuracy", title="bioS: P_test after QA FT")
        ax.legend()
        out.append(save_figure(fig, run_dir, "bios_accuracy"))
        fig, ax = plt.subplots()
        for aug in [r["augment"] for r in res]:
            pts = [r for r in records if r["split"] == "pretrain" and r["augment"] == aug
                   and "train_loss" in r]
            ax.plot([p["step"] for p in pts], [p["train_loss"] for p in pts], label=aug)
        ax.set(xlabel="pre-training step", ylabel="loss", yscale="log", title="pre-training")
        ax.legend()
        out.append(save_figure(fig, run_dir, "bios_pretrain"))
    return out


BIOS = Experiment(
    name="bios",
    claim="Held-out Q&A accuracy after QA fine-tuning is far higher when biographies are "
          "pre-trained with multi5+permute augmentation than with a single entry (Physics 3.1).",
    config=BiosExperimentConfig,
    run=run_bios,
    figures=bios_figures,
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
