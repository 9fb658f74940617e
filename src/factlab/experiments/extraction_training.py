"""How training shapes extraction (arXiv 2508.00901): lr schedules, and the MLP's role.

extraction-schedule is descriptive. The paper says only that the schedule shapes the dynamics,
with no direction we could test, so the experiment measures without a claim. Each schedule
(constant, warmup_cosine, cosine, step) gets its own tuned peak lr, chosen on the validation
subjects: on pre-training (constant fine-tuning at `finetune.lr` after each candidate; the peak
lr grid is `pretrain_lrs`, every run its full course), and on fine-tuning (from the constant
pre-training, the fine-tuning lr grid). It reports held-out accuracy at the chosen lr, the
chosen lrs, stored accuracy and the steps to 99% stored, as mean [min, max] over seeds.

extraction-attention-only, at its scope: (a) one attention head with no MLP cannot store facts
that are not additive in subject and relation (random a*(s, r)): its stored accuracy stays
< STORED_MIN where the attention+MLP model reaches STORED_MIN; (b) enough heads can: the
`multi_heads`-head attention-only model reaches stored accuracy >= STORED_MIN. Holds when both
halves hold; fails when either fails, except that (b) failing while its stored accuracy was
still improving at the budget is inconclusive (starved), as is an MLP model that did not
store (the prerequisite of (a)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from factlab.analysis.seeds import over_seeds
from factlab.analysis.selection import best_on_validation
from factlab.analysis.verdicts import Verdict, decide, inconclusive, spread
from factlab.config import require
from factlab.experiments.base import Experiment, RunContext
from factlab.experiments.extraction import PAPER, QUICK
from factlab.pipelines.extraction import STORED_MIN, ExtractionConfig
from factlab.pipelines.extraction_grid import sweep
from factlab.report.extraction import figures_attention_only, figures_schedule

SCHEDULES = ("constant", "warmup_cosine", "cosine", "step")


def select_schedules(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (seed, phase, schedule): the record at the lr with the best P_val accuracy."""
    out = []
    keys = dict.fromkeys((r["seed"], r["phase"], r["schedule"]) for r in rows)
    for seed, phase, name in keys:
        sel = [r for r in rows if (r["seed"], r["phase"], r["schedule"]) == (seed, phase, name)]
        pick = best_on_validation({i: r["val_acc"] for i, r in enumerate(sel)})
        out.append(sel[pick])
    return out


def describe_schedules(selected: list[dict[str, Any]]) -> Verdict:
    """The descriptive summary: per phase and schedule, held-out acc and the chosen lr."""
    parts, metrics = [], {}
    for phase in ("pretrain", "finetune"):
        sel = [r for r in selected if r["phase"] == phase]
        text = []
        for name in dict.fromkeys(r["schedule"] for r in sel):
            rs = [r for r in sel if r["schedule"] == name]
            lr_key = "pretrain_lr" if phase == "pretrain" else "lr"
            lrs = sorted({r[lr_key] for r in rs})
            acc = [r["test_acc"] for r in rs]
            metrics[f"{phase}/{name}"] = {"test_acc": float(np.mean(acc)), "lrs": lrs,
                                          "stored_acc": float(np.mean([r["stored_acc"]
                                                                       for r in rs]))}
            extra = ""
            if phase == "pretrain":
                steps = [r["steps_to_acquire"] for r in rs]
                extra = (f", stored {spread([r['stored_acc'] for r in rs])}, steps to 99% "
                         f"{spread(steps, '.0f')}")
            text.append(f"{name}: held-out {spread(acc)}, lr {'/'.join(f'{v:g}' for v in lrs)}"
                        f"{extra}")
        parts.append(f"schedule on {phase} -> " + "; ".join(text))
    return Verdict("descriptive", " || ".join(parts) + " (descriptive: no claim)", metrics)


def run_schedule(cfg: ScheduleConfig, ctx: RunContext) -> Verdict:
    """Pre-training schedules x peak lrs (constant FT), and fine-tuning schedules (tuned lr)."""
    cells = []
    for name in cfg.schedules:
        for lr in cfg.pretrain_lrs:
            cells.append(({"phase": "pretrain", "schedule": name, "pretrain_lr": lr},
                          dataclasses.replace(cfg, pretrain_schedule=name,
                                              pretrain=dataclasses.replace(cfg.pretrain, lr=lr),
                                              finetune_lrs=(cfg.finetune.lr,))))
    for name in cfg.schedules:
        cells.append(({"phase": "finetune", "schedule": name, "pretrain_lr": cfg.pretrain.lr},
                      dataclasses.replace(cfg, finetune_schedule=name)))
    count = [0]

    def on_row(row: dict) -> None:
        ctx.log(count[0], "cell", **row)
        count[0] += 1

    selected = select_schedules(sweep(cells, cfg.seeds, ctx.device, on_row))
    for i, row in enumerate(selected):
        ctx.log(i, "selected", **row)
    return describe_schedules(selected)


def judge_attention_only(cells: list[dict[str, Any]]) -> Verdict:
    """extraction-attention-only on one seed's (or the seed-mean) records."""
    by = {c["variant"]: c for c in cells}
    mlp, one = by["mlp"], by["attn_1head"]
    many = next(c for name, c in by.items() if name not in ("mlp", "attn_1head"))
    one_ok = one["stored_acc"] < STORED_MIN
    many_ok = many["stored_acc"] >= STORED_MIN
    ev = (f"stored: attention+MLP {mlp['stored_acc']:.3f}, attention-only 1 head "
          f"{one['stored_acc']:.3f} (needs < {STORED_MIN}), {many['variant']} "
          f"{many['stored_acc']:.3f} (needs >= {STORED_MIN})")
    metrics = {"mlp_stored": mlp["stored_acc"], "one_head_stored": one["stored_acc"],
               "multi_head_stored": many["stored_acc"], "one_head_fails": one_ok,
               "multi_head_stores": many_ok}
    if mlp["stored_acc"] < STORED_MIN:
        return inconclusive(f"prerequisite not met: the attention+MLP model stored "
                            f"{mlp['stored_acc']:.3f} < {STORED_MIN}", ev, metrics)
    if not many_ok and many["pretrain_improving"]:
        return inconclusive(f"budget: {many['variant']} still improving when pre-training "
                            f"ended", ev, metrics)
    return decide(one_ok and many_ok, ev, metrics)


def run_attention_only(cfg: AttentionOnlyConfig, ctx: RunContext) -> Verdict:
    """Pre-training of the MLP model, one attention-only head, and `multi_heads` heads."""
    d = cfg.model.d_model
    variants = {
        "mlp": cfg.model,
        "attn_1head": dataclasses.replace(cfg.model, d_mlp=0, n_heads=1, d_head=d),
        f"attn_{cfg.multi_heads}heads": dataclasses.replace(
            cfg.model, d_mlp=0, n_heads=cfg.multi_heads, d_head=max(1, d // cfg.multi_heads)),
    }
    cells = [({"variant": name}, dataclasses.replace(cfg, model=m))
             for name, m in variants.items()]
    count = [0]

    def on_row(row: dict) -> None:
        ctx.log(count[0], "cell", **row)
        count[0] += 1

    return verdict_attention_only(sweep(cells, cfg.seeds, ctx.device, on_row, finetune=False))


def verdict_attention_only(rows: list[dict[str, Any]]) -> Verdict:
    """extraction-attention-only over the seeds of its "cell" records."""
    return over_seeds(rows, judge_attention_only, ("variant",),
                      spread_of=("mlp_stored", "one_head_stored", "multi_head_stored"))


@dataclasses.dataclass
class ScheduleConfig(ExtractionConfig):
    """Schedules to compare and the peak-lr grid of pre-training (tuned on P_val)."""

    schedules: tuple[str, ...] = SCHEDULES
    pretrain_lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)

    def check(self) -> None:
        super().check()
        bad = [s for s in self.schedules if s not in SCHEDULES]
        require(not bad and self.schedules, "schedules",
                f"each must be one of {', '.join(SCHEDULES)}; got {bad or 'nothing'}")
        require(len(self.pretrain_lrs) >= 1 and all(lr > 0 for lr in self.pretrain_lrs),
                "pretrain_lrs", "needs at least one lr, all > 0")


@dataclasses.dataclass
class AttentionOnlyConfig(ExtractionConfig):
    """The number of heads of the multi-head attention-only variant."""

    multi_heads: int = 8

    def check(self) -> None:
        super().check()
        require(self.multi_heads >= 2, "multi_heads", f"must be >= 2, got {self.multi_heads}")
        require(self.model.d_mlp > 0, "model.d_mlp", "the baseline needs an MLP (> 0)")


EXTRACTION_SCHEDULE = Experiment(
    name="extraction-schedule",
    claim="Descriptive: held-out extraction and acquisition under each lr schedule, each at its "
          "own peak lr tuned on validation, applied to pre-training and to fine-tuning.",
    config=ScheduleConfig, run=run_schedule, figures=figures_schedule, descriptive=True,
    presets={"quick": {**QUICK, "pretrain.target_acc": 0.0, "pretrain.steps": 1000,
                       "pretrain.eval_every": 250, "pretrain_lrs": "0.01,0.03"},
             "paper": {**PAPER, "pretrain.target_acc": 0.0}},
)

EXTRACTION_ATTENTION_ONLY = Experiment(
    name="extraction-attention-only",
    claim="One attention-only head cannot store facts that are not additive in subject and "
          "relation (the attention+MLP model can); enough attention-only heads can.",
    config=AttentionOnlyConfig, run=run_attention_only, figures=figures_attention_only,
    presets={"quick": QUICK, "paper": PAPER},
)
