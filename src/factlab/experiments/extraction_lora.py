"""Full vs low-rank fine-tuning for extraction (arXiv 2508.00901, "LoRA suffices").

Decided before the runs. In the one-layer model the Q&A format reaches the MLP only through
attention: the query at AFMT is φ(AFMT) W_Q, and which tokens it reads is set by W_QK. So the
format-aligned update that the paper's rank argument is about is looked for in W_QK, and the
adapters sit where that update lives as well as on the MLP:

  targets  W_Q (the query side alone), W_Q+W_K (both sides of W_QK), W_in (the MLP's first
           matrix, the spec's default target), each at ranks 1, 2, 4;
  lr       full fine-tuning and every LoRA variant get their own lr grid (`finetune_lrs`,
           `lora_lrs`; B starts at zero, so LoRA's grid sits higher), chosen on the validation
           subjects, each run restored to its best checkpoint on validation;
  c        the claim is judged at the largest coverage (c = 1: "sufficient coverage").

Claim and rule (per seed and on the seed mean, combined by `combine_seeds`):
(a) some attention adapter (W_Q or W_Q+W_K) of rank <= 4 extracts within LORA_GAP of full
    fine-tuning: the attention variant with the best validation accuracy has held-out accuracy
    >= full - LORA_GAP (chosen on validation, read on test);
(b) the full fine-tuning update of W_QK is dominated by one direction aligned with the answer
    format: σ1²/Σσ² >= TOP_ENERGY_MIN, and the |cos| of its top input-side singular vector
    with φ(QFMT) or φ(AFMT) exceeds the 99% quantile of the same |cos| for random directions
    in R^d (a null computed in the run). ΔW_in's numbers are reported beside it.
Holds when (a) and (b) hold. Fails when either fails, except that a failing (a) whose chosen
adapter was still improving on validation at the last step is inconclusive (a starved run);
inconclusive also when the facts were not stored (< STORED_MIN).
"""

from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace
from typing import Any

from factlab.analysis.seeds import over_seeds
from factlab.analysis.selection import best_on_validation
from factlab.analysis.verdicts import Verdict, decide, inconclusive
from factlab.config import require
from factlab.experiments.base import Experiment, RunContext
from factlab.experiments.extraction import PAPER, QUICK, stored_reason
from factlab.pipelines.extraction import ExtractionConfig
from factlab.pipelines.extraction_grid import sweep, with_corpus
from factlab.report.extraction import figures_lora

LORA_GAP = 0.05
"""LoRA "about as well as full fine-tuning": within 5 points of it (the resolution of the
trend rule, MIN_EFFECT)."""

TOP_ENERGY_MIN = 0.5
# the rule's constants, for the figures that draw them
LORA_RULE = SimpleNamespace(LORA_GAP=LORA_GAP, TOP_ENERGY_MIN=TOP_ENERGY_MIN)
""""Dominated by one direction": the top singular value carries most of the update's energy."""

ATTENTION_TARGETS = ("W_Q", "W_Q+W_K")
TARGETS = {"W_Q": ("W_Q",), "W_Q+W_K": ("W_Q", "W_K"), "W_in": ("W_in",)}


def judge_lora(cells: list[dict[str, Any]]) -> Verdict:
    """extraction-lora on one seed's (or the seed-mean) records at the judged coverage."""
    c_hi = max(c["coverage"] for c in cells)
    cells = [c for c in cells if c["coverage"] == c_hi]
    full = next(c for c in cells if c["variant"] == "full")
    attn = {c["variant"]: c for c in cells
            if c.get("target") in ATTENTION_TARGETS and c["rank"] <= 4}
    pick = attn[best_on_validation({k: v["val_acc"] for k, v in attn.items()})]
    gap_ok = pick["test_acc"] >= full["test_acc"] - LORA_GAP
    energy, align, null = (full["dW_QK_top_energy"], full["dW_QK_align_format"],
                           full["align_null"])
    rank_ok = energy >= TOP_ENERGY_MIN and align > null
    table = ", ".join(f"{c['variant']} {c['test_acc']:.3f}/ret {c['retained_acc']:.2f}/lr "
                      f"{c['lr']:g}" for c in cells if c["variant"] != "full")
    ev = (f"c={c_hi:g}: full FT {full['test_acc']:.3f} (retained {full['retained_acc']:.2f}, "
          f"lr {full['lr']:g}); best attention adapter on P_val {pick['variant']} "
          f"{pick['test_acc']:.3f} (needs >= full - {LORA_GAP}); full-FT dW_QK top energy "
          f"{energy:.2f} (needs >= {TOP_ENERGY_MIN}), |cos| with format {align:.2f} (needs > "
          f"random q99 {null:.2f}); dW_in top energy {full['dW_in_top_energy']:.2f}, |cos| "
          f"{full['dW_in_align_format']:.2f}; LoRA held-out/retained/lr: {table}")
    metrics = {"full_acc": full["test_acc"], "best_attention_acc": pick["test_acc"],
               "gap": full["test_acc"] - pick["test_acc"], "dW_QK_top_energy": energy,
               "dW_QK_align_format": align, "dW_in_top_energy": full["dW_in_top_energy"],
               "gap_ok": gap_ok, "rank_one_ok": rank_ok, "align_null": null,
               "table": {c["variant"]: {k: c[k] for k in ("test_acc", "retained_acc", "lr")}
                         for c in cells}}
    if stored_reason(cells):
        return inconclusive(stored_reason(cells), ev, metrics)
    if not gap_ok and pick["still_improving"]:
        return inconclusive(f"budget: {pick['variant']} still improving on P_val at the last "
                            f"fine-tuning step", ev, metrics)
    return decide(gap_ok and rank_ok, ev, metrics)


def run_lora(cfg: LoRAExpConfig, ctx: RunContext) -> Verdict:
    """Full FT and LoRA (target x rank) at each coverage, one pre-training per seed."""
    cells = []
    for c in cfg.coverages:
        base = with_corpus(cfg, coverage=c)
        cells.append(({"coverage": c, "variant": "full", "target": "full", "rank": 0},
                      dataclasses.replace(base, method="full")))
        for target in cfg.targets:
            for rank in cfg.ranks:
                cells.append(({"coverage": c, "variant": f"{target} r={rank}", "target": target,
                               "rank": rank},
                              dataclasses.replace(base, method="lora", lora_rank=rank,
                                                  lora_targets=TARGETS[target])))
    count = [0]

    def on_row(row: dict) -> None:
        ctx.log(count[0], "cell", **row)
        count[0] += 1

    return verdict_lora(sweep(cells, cfg.seeds, ctx.device, on_row))


def verdict_lora(rows: list[dict[str, Any]]) -> Verdict:
    """extraction-lora over the seeds of its "cell" records."""
    return over_seeds(rows, judge_lora, ("coverage", "variant"),
                      spread_of=("full_acc", "best_attention_acc", "gap", "dW_QK_top_energy",
                                 "dW_QK_align_format"))


@dataclasses.dataclass
class LoRAExpConfig(ExtractionConfig):
    """Grid: adapter targets x ranks (plus full fine-tuning) at each coverage."""

    targets: tuple[str, ...] = ("W_Q", "W_Q+W_K", "W_in")
    ranks: tuple[int, ...] = (1, 2, 4)
    coverages: tuple[float, ...] = (0.25, 1.0)

    def check(self) -> None:
        super().check()
        require(len(self.ranks) >= 1 and min(self.ranks) >= 1, "ranks", "each rank must be >= 1")
        bad = [t for t in self.targets if t not in TARGETS]
        require(not bad and any(t in ATTENTION_TARGETS for t in self.targets), "targets",
                f"each must be one of {', '.join(TARGETS)}, with at least one attention target")
        require(min(self.ranks) <= 4, "ranks", "the claim needs a rank <= 4")
        require(len(self.coverages) >= 1 and all(0 < c <= 1 for c in self.coverages),
                "coverages", "each must be in (0, 1]")


EXTRACTION_LORA = Experiment(
    name="extraction-lora",
    claim="At sufficient coverage a rank <= 4 adapter on attention extracts within 0.05 of full "
          "fine-tuning, and the full update of W_QK is one direction aligned with the format.",
    config=LoRAExpConfig, run=run_lora, figures=functools.partial(figures_lora, rule=LORA_RULE),
    presets={"quick": {**QUICK, "coverages": "1"}, "paper": PAPER},
)
