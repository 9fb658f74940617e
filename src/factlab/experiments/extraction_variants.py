"""Variants of the extraction setup (arXiv 2508.00901): what multiplicity means, and questions
that name the relation instead of the template.

Rules, fixed before the runs (thresholds and the comparison rule in `experiments.extraction`):

extraction-repeats: the multiplicity that helps extraction is the number of *distinct*
templates a fact was pre-trained with, not the number of times it was seen. At the same K
(same corpus size, same pre-training steps, so the same exposure per fact), K distinct
templates per fact (`multiplicity_mode=templates`) against K copies of one template
(`multiplicity_mode=repeats`). Judged at the largest K of the grid with the two-point form of
the trend rule along repeats -> templates: held-out accuracy of templates minus repeats >=
MIN_EFFECT (five points, above the binomial noise of >= 800 test queries; the sign is the
claim's, the margin the family's). Holds when it does; fails when it does not. Inconclusive
when some cell's facts were not stored (< STORED_MIN, the prerequisite), or when the gap falls
short while a judged fine-tuning was still improving on P_val at its last step (starved).
Smaller K are reported beside it. Batches are drawn uniformly from the corpus rows, so K
copies of one template are, in distribution, the K = 1 corpus: repeats at any K is the
"exposure without new templates" baseline.

extraction-question is descriptive. The per-relation question token (QREL_r in place of
T_{r,j} in the Q&A format) asks about relation-level rather than template-level coverage; no
direction is stated for it that we could test. The experiment measures, from one pre-training per
seed, held-out accuracy with template questions and with relation questions at each fine-tuning
coverage of `coverages` (random C), and their difference, as mean [min, max] over seeds.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from factlab.analysis.seeds import over_seeds
from factlab.analysis.verdicts import Verdict, decide, inconclusive, spread
from factlab.config import require
from factlab.experiments.base import Experiment, RunContext
from factlab.experiments.extraction import (
    EXTRACTION_RULE,
    MIN_EFFECT,
    PAPER,
    QUICK,
    cell_logger,
    stored_reason,
    trend_part,
)
from factlab.pipelines.extraction import STORED_MIN, ExtractionConfig
from factlab.pipelines.extraction_grid import sweep, with_corpus
from factlab.report.extraction_variants import figures_question, figures_repeats

MODES = ("repeats", "templates")  # the order of the two-point comparison: repeats -> templates
QUESTIONS = ("template", "relation")


# ----------------------------------------------------------------------------- repeats


def _cell(cells: list[dict[str, Any]], k: int, mode: str) -> dict[str, Any]:
    return next(c for c in cells if c["K"] == k and c["multiplicity_mode"] == mode)


def judge_repeats(cells: list[dict[str, Any]]) -> Verdict:
    """extraction-repeats on one seed's (or the seed-mean) records: templates vs repeats at the
    largest K, by the trend rule on the two points (repeats, templates)."""
    ks = sorted({c["K"] for c in cells})
    k = int(ks[-1])  # the seed mean stores K as a float
    rep, tem = _cell(cells, k, "repeats"), _cell(cells, k, "templates")
    part = trend_part([0, 1], [rep["test_acc"], tem["test_acc"]], +1)
    gaps = {kk: _cell(cells, kk, "templates")["test_acc"] - _cell(cells, kk, "repeats")["test_acc"]
            for kk in ks}
    others = ", ".join(f"K={kk:g}: {g:+.3f}" for kk, g in gaps.items() if kk != k)
    seen_gap = tem["test_acc_cov_seen"] - rep["test_acc_cov_seen"]
    ev = (f"K={k}: held-out templates {tem['test_acc']:.3f} vs repeats {rep['test_acc']:.3f}, "
          f"gap {part['effect']:+.3f} (needs >= {MIN_EFFECT}); seen-template cell templates "
          f"{tem['test_acc_cov_seen']:.3f} vs repeats {rep['test_acc_cov_seen']:.3f} (gap "
          f"{seen_gap:+.3f}, not judged); "
          f"stored {min(c['stored_acc'] for c in cells):.3f}"
          + (f"; gap at {others}" if others else ""))
    metrics = {"gap": part["effect"], "templates_acc": tem["test_acc"],
               "repeats_acc": rep["test_acc"], "K": k, "seen_gap": seen_gap,
               "gaps": {f"{kk:g}": g for kk, g in gaps.items()}}
    if stored_reason(cells):
        return inconclusive(stored_reason(cells), ev, metrics)
    if not part["ok"] and (rep["still_improving"] or tem["still_improving"]):
        return inconclusive("budget: P_val accuracy still improving at the last fine-tuning "
                            "step of a judged cell", ev, metrics)
    return decide(part["ok"], ev, metrics)


def run_repeats(cfg: RepeatsConfig, ctx: RunContext) -> Verdict:
    """One pre-training per (K, mode) and seed, each fine-tuned once (lr grid on P_val)."""
    cells = [({"K": k, "multiplicity_mode": m},
              with_corpus(cfg, multiplicity=k, multiplicity_mode=m))
             for k in cfg.values for m in MODES]
    return verdict_repeats(sweep(cells, cfg.seeds, ctx.device, cell_logger(ctx)))


def verdict_repeats(rows: list[dict[str, Any]]) -> Verdict:
    """extraction-repeats over the seeds of its "cell" records."""
    return over_seeds(rows, judge_repeats, ("K", "multiplicity_mode"),
                      spread_of=("gap", "templates_acc", "repeats_acc", "seen_gap"))


# ----------------------------------------------------------------------------- question


def describe_question(rows: list[dict[str, Any]]) -> Verdict:
    """The descriptive summary of extraction-question: per coverage, held-out accuracy with
    template and with relation questions and their per-seed difference, mean [min, max]."""
    seeds = sorted({r["seed"] for r in rows})
    texts, metrics = [], {}
    for c in sorted({r["coverage"] for r in rows}):
        acc = {q: [next(r["test_acc"] for r in rows if r["seed"] == s and r["coverage"] == c
                        and r["question"] == q) for s in seeds] for q in QUESTIONS}
        diff = [a - b for a, b in zip(acc["relation"], acc["template"])]
        metrics[f"c={c:g}"] = {q: sum(v) / len(v) for q, v in acc.items()}
        metrics[f"c={c:g}"]["diff"] = sum(diff) / len(diff)
        metrics[f"c={c:g}"]["diff_seeds"] = diff
        texts.append(f"c={c:g}: template questions {spread(acc['template'])}, relation "
                     f"questions {spread(acc['relation'])}, relation - template "
                     f"{spread(diff, '+.3f')}")
    # the cells of a seed share one pre-training: one stored accuracy per seed
    stored = [min(r["stored_acc"] for r in rows if r["seed"] == s) for s in seeds]
    metrics["stored_min"] = min(stored)
    chance = rows[0]["chance_block"]
    flag = "" if min(stored) >= STORED_MIN else f" (below {STORED_MIN}: not all facts stored)"
    return Verdict("descriptive", "; ".join(texts) + f"; stored {spread(stored)}{flag}; "
                   f"chance {chance:.3f} in-block (descriptive: no claim)", metrics)


def run_question(cfg: QuestionConfig, ctx: RunContext) -> Verdict:
    """One pre-training per seed (the question token enters only fine-tuning and the test);
    each (coverage, question) cell fine-tuned from a copy of it."""
    cells = [({"coverage": c, "question": q}, with_corpus(cfg, coverage=c, question=q))
             for c in cfg.coverages for q in QUESTIONS]
    return describe_question(sweep(cells, cfg.seeds, ctx.device, cell_logger(ctx)))


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass
class RepeatsConfig(ExtractionConfig):
    """Grid: multiplicity K, each run as K distinct templates and as K copies of one (the
    largest K is judged; K = 1 is the same corpus in both modes, so K >= 2)."""

    values: tuple[int, ...] = (2, 4, 8)

    def check(self) -> None:
        super().check()
        require(len(self.values) >= 1, "values", "needs at least one K")
        bad = [k for k in self.values if not 2 <= k <= self.corpus.n_templates]
        require(not bad, "values", f"each K must be in 2..corpus.n_templates="
                f"{self.corpus.n_templates} (K = 1 is one template in both modes); got "
                f"{bad[0] if bad else ''}")


@dataclasses.dataclass
class QuestionConfig(ExtractionConfig):
    """Grid: fine-tuning coverages c (random C), each with template and relation questions."""

    coverages: tuple[float, ...] = (0.25, 1.0)

    def check(self) -> None:
        super().check()
        require(len(self.coverages) >= 1 and all(0 < c <= 1 for c in self.coverages),
                "coverages", "needs at least one coverage, each in (0, 1]")


EXTRACTION_REPEATS = Experiment(
    name="extraction-repeats",
    claim="At the same multiplicity K, pre-training each fact with K distinct templates "
          "extracts more held-out facts than K repeats of one template: the templates, not "
          "the repeated exposure, make facts extractable.",
    config=RepeatsConfig, run=run_repeats,
    figures=functools.partial(figures_repeats, rule=EXTRACTION_RULE),
    presets={"quick": {**QUICK, "values": "4"}, "paper": PAPER},
)

EXTRACTION_QUESTION = Experiment(
    name="extraction-question",
    claim="Descriptive: held-out extraction when the Q&A question names the relation (one "
          "question token per relation) instead of the template, at each fine-tuning coverage.",
    config=QuestionConfig, run=run_question, figures=figures_question, descriptive=True,
    presets={"quick": {**QUICK, "coverages": "0.25,1"}, "paper": PAPER},
)
