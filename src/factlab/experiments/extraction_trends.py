"""Extraction trends (arXiv 2508.00901): multiplicity K, universe |R|, coverage c, size Ñ_f.

Rules, fixed before the runs (thresholds and the trend rule in `experiments.extraction`):

extraction-multiplicity / extraction-universe: held-out accuracy rises with K (falls with
|R| = n_rel tau at fixed K and Ñ_f) by the trend rule (Spearman rho >= RHO_MIN in the claimed
direction, end-to-end change >= MIN_EFFECT), judged twice: on all test queries and on the
covered-and-seen cell (template in C and in J(s, r)). The test set holds every template, so
the share of queries whose template the fact was pre-trained with (K / tau) moves along both
sweeps; the covered-and-seen cell is free of that composition. Holds when both parts hold;
fails when either fails. Inconclusive when some cell's facts were not stored (< STORED_MIN).

extraction-coverage, at the long noisy layout where pre-training attention must find s and T
among noise: (a) the trend rule on c (random C, held-out accuracy), and (b) the
stored-but-inaccessible regime at the smallest judged c > 0 with whole-relation C: held-out
accuracy on the relations fine-tuning never touched <= NEAR_CHANCE_FACTOR / D (chance 1/D)
while the held-out facts are still retained in the pre-training format (retained accuracy >=
EXTRACT_MIN). Holds when (a) and (b) hold; fails when either fails; inconclusive when stored
accuracy < STORED_MIN at any judged cell. Hallucination (confident wrong answers) against c is
reported beside it, with no claim.

extraction-size: held-out accuracy rises with the fine-tuning size Ñ_f (the trend rule) on the
default setup. It owns the collapse: every (setup, Ñ_f) cell, across multiplicities and
universes, is pooled on log(1 - acc) against x = Ñ_f K² log|R| / (2|R|²); the fit's slope b
and R² are reported (descriptive: the bound is an upper bound, so only its shape is shown).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from factlab.analysis.extraction_stats import log_error_fit
from factlab.analysis.seeds import mean_records, over_seeds
from factlab.analysis.verdicts import Verdict, decide, inconclusive
from factlab.config import require
from factlab.experiments.base import Experiment, RunContext
from factlab.experiments.extraction import (
    EXTRACT_MIN,
    EXTRACTION_RULE,
    NEAR_CHANCE_FACTOR,
    PAPER,
    QUICK,
    cell_logger,
    stored_reason,
    trend_part,
    trend_text,
)
from factlab.pipelines.extraction import ExtractionConfig
from factlab.pipelines.extraction_grid import sweep, with_corpus
from factlab.report.extraction import figures_coverage, figures_size, make_trend_figure
from factlab.tasks.extraction_corpus import CorpusConfig


def _ordered(cells: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(cells, key=lambda c: c[key])


def judge_two_part_trend(cells: list[dict[str, Any]], key: str, sign: int) -> Verdict:
    """Trend on all test queries and on the covered-and-seen cell; both must hold."""
    cells = _ordered(cells, key)
    values = [c[key] for c in cells]
    parts = {}
    texts = []
    for name, metric in (("overall", "test_acc"), ("covered&seen", "test_acc_cov_seen")):
        accs = [c[metric] for c in cells]
        parts[name] = trend_part(values, accs, sign)
        texts.append(trend_text(name, values, accs, parts[name], sign))
    ev = "; ".join(texts)
    metrics = {"overall_ok": parts["overall"]["ok"], "cov_seen_ok": parts["covered&seen"]["ok"],
               "effect": parts["overall"]["effect"],
               "effect_cov_seen": parts["covered&seen"]["effect"],
               "rho": parts["overall"]["rho"], "rho_cov_seen": parts["covered&seen"]["rho"]}
    if stored_reason(cells):
        return inconclusive(stored_reason(cells), ev, metrics)
    return decide(parts["overall"]["ok"] and parts["covered&seen"]["ok"], ev, metrics)


def judge_multiplicity(cells: list[dict[str, Any]]) -> Verdict:
    """extraction-multiplicity on one seed's (or the seed-mean) records."""
    return judge_two_part_trend(cells, "K", +1)


def judge_universe(cells: list[dict[str, Any]]) -> Verdict:
    """extraction-universe on one seed's (or the seed-mean) records."""
    return judge_two_part_trend(cells, "universe_size", -1)


def judge_coverage(cells: list[dict[str, Any]]) -> Verdict:
    """extraction-coverage on one seed's (or the seed-mean) records."""
    rnd = _ordered([c for c in cells if c["mode"] == "random"], "coverage")
    rel = _ordered([c for c in cells if c["mode"] == "relations" and c["coverage"] > 0],
                   "coverage")
    values, accs = [c["coverage"] for c in rnd], [c["test_acc"] for c in rnd]
    trend = trend_part(values, accs, +1)
    low = rel[0]
    near = NEAR_CHANCE_FACTOR * low["chance_block"]
    unc, ret = low["test_acc_rel_uncovered"], low["retained_acc"]
    regime = unc <= near and ret >= EXTRACT_MIN
    hall = ", ".join(f"{c['coverage']:g}: {c['test_hallucination']:.2f}" for c in rnd)
    ev = (f"{trend_text('random C', values, accs, trend, +1)}; at c={low['coverage']:g} "
          f"(whole relations): uncovered relations {unc:.3f} (needs <= {near:.3f}, chance "
          f"{low['chance_block']:.3f}), covered {low['test_acc_rel_covered']:.3f}, retained "
          f"{ret:.3f} (needs >= {EXTRACT_MIN}); stored {min(c['stored_acc'] for c in cells):.3f}"
          f"; hallucination by c {{{hall}}}")
    metrics = {"trend_ok": trend["ok"], "regime_ok": regime, "effect": trend["effect"],
               "uncovered_acc": unc, "retained_low_c": ret, "rho": trend["rho"],
               "near_chance": near}
    if stored_reason(cells):
        return inconclusive(stored_reason(cells), ev, metrics)
    return decide(trend["ok"] and regime, ev, metrics)


def judge_size(cells: list[dict[str, Any]]) -> Verdict:
    """extraction-size on one seed's (or the seed-mean) records: the default setup's trend."""
    base = _ordered([c for c in cells if c["setup"] == cells[0]["setup"]], "n_finetune")
    values, accs = [c["n_finetune"] for c in base], [c["test_acc"] for c in base]
    trend = trend_part(values, accs, +1)
    fit = log_error_fit([c["bound_x"] for c in cells], [c["test_acc"] for c in cells])
    ev = (f"{trend_text(base[0]['setup'], values, accs, trend, +1)}; collapse of all "
          f"{len(cells)} cells: log err = a - b x, b = {fit['b']:.3g}, R^2 = {fit['r2']:.2f} "
          f"(n = {fit['n']})")
    metrics = {"effect": trend["effect"], "collapse_b": fit["b"], "collapse_r2": fit["r2"],
               "rho": trend["rho"]}
    if stored_reason(base):
        return inconclusive(stored_reason(base), ev, metrics)
    return decide(trend["ok"], ev, metrics)


def run_multiplicity(cfg: MultiplicityConfig, ctx: RunContext) -> Verdict:
    """One pipeline per K x seed."""
    cells = [({"K": k}, with_corpus(cfg, multiplicity=k)) for k in cfg.values]
    return verdict_multiplicity(sweep(cells, cfg.seeds, ctx.device, cell_logger(ctx)))


def verdict_multiplicity(rows: list[dict[str, Any]]) -> Verdict:
    """extraction-multiplicity over the seeds of its "cell" records."""
    return over_seeds(rows, judge_multiplicity, ("K",), spread_of=("effect", "effect_cov_seen"))


def run_universe(cfg: UniverseConfig, ctx: RunContext) -> Verdict:
    """One pipeline per tau x seed (|R| = n_rel tau)."""
    n_rel = cfg.corpus.n_relations
    cells = [({"universe_size": n_rel * t}, with_corpus(cfg, n_templates=t)) for t in cfg.values]
    return verdict_universe(sweep(cells, cfg.seeds, ctx.device, cell_logger(ctx)))


def verdict_universe(rows: list[dict[str, Any]]) -> Verdict:
    """extraction-universe over the seeds of its "cell" records."""
    return over_seeds(rows, judge_universe, ("universe_size",),
                      spread_of=("effect", "effect_cov_seen"))


def run_coverage(cfg: CoverageConfig, ctx: RunContext) -> Verdict:
    """One pre-training per seed; every (mode, c) cell fine-tuned from a copy of it."""
    cells = [({"mode": "random", "coverage": c},
              with_corpus(cfg, coverage=c, coverage_mode="random")) for c in cfg.values]
    cells += [({"mode": "relations", "coverage": c},
               with_corpus(cfg, coverage=c, coverage_mode="relations"))
              for c in cfg.relation_values]
    return verdict_coverage(sweep(cells, cfg.seeds, ctx.device, cell_logger(ctx)))


def verdict_coverage(rows: list[dict[str, Any]]) -> Verdict:
    """extraction-coverage over the seeds of its "cell" records."""
    return over_seeds(rows, judge_coverage, ("mode", "coverage"),
                      spread_of=("effect", "uncovered_acc", "retained_low_c"))


def run_size(cfg: SizeConfig, ctx: RunContext) -> Verdict:
    """Ñ_f sweep for each (K, tau) setup; one pre-training per setup and seed."""
    cells = []
    for k, tau in cfg.parsed_setups():
        for n in cfg.values:
            cells.append(({"setup": f"K={k}, tau={tau}", "n_finetune": n},
                          with_corpus(cfg, multiplicity=k, n_templates=tau, n_finetune=n)))
    return verdict_size(sweep(cells, cfg.seeds, ctx.device, cell_logger(ctx)))


def verdict_size(rows: list[dict[str, Any]]) -> Verdict:
    """extraction-size over the seeds of its "cell" records, with the pooled collapse fit."""
    verdict = over_seeds(rows, judge_size, ("setup", "n_finetune"), spread_of=("effect",))
    pooled = mean_records(rows, ("setup", "n_finetune"))
    verdict.metrics["collapse_fit"] = log_error_fit([r["bound_x"] for r in pooled],
                                                    [r["test_acc"] for r in pooled])
    return verdict


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass
class MultiplicityConfig(ExtractionConfig):
    """Grid: multiplicity K (each value <= corpus.n_templates)."""

    values: tuple[int, ...] = (1, 2, 4, 8)

    def check(self) -> None:
        super().check()
        require(len(self.values) >= 2, "values", "needs at least two K")
        bad = [k for k in self.values if not 1 <= k <= self.corpus.n_templates]
        require(not bad, "values", f"each K must be in 1..corpus.n_templates="
                f"{self.corpus.n_templates}; got {bad[0] if bad else ''}")


@dataclasses.dataclass
class UniverseConfig(ExtractionConfig):
    """Grid: templates per relation tau (|R| = n_rel * tau), each >= corpus.multiplicity."""

    corpus: CorpusConfig = dataclasses.field(default_factory=lambda: CorpusConfig(
        multiplicity=2))  # K = 2, so that tau = 2 is allowed
    values: tuple[int, ...] = (2, 8, 32)

    def check(self) -> None:
        super().check()
        require(len(self.values) >= 2, "values", "needs at least two tau")
        bad = [t for t in self.values if t < self.corpus.multiplicity]
        require(not bad, "values", f"each tau must be >= corpus.multiplicity="
                f"{self.corpus.multiplicity}; got {bad[0] if bad else ''}")


@dataclasses.dataclass
class CoverageConfig(ExtractionConfig):
    """Grids: c for random C (the trend) and c > 0 for whole-relation C (the regime)."""

    values: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0)
    relation_values: tuple[float, ...] = (0.125, 0.5, 1.0)

    def check(self) -> None:
        super().check()
        require(len(self.values) >= 2 and list(self.values) == sorted(self.values), "values",
                "needs at least two coverages, ascending")
        require(all(0 <= c <= 1 for c in self.values), "values", "each c must be in [0, 1]")
        n_rel = self.corpus.n_relations
        bad = [c for c in self.relation_values if not 1 <= round(c * n_rel) < n_rel + 1]
        require(len(self.relation_values) >= 1 and not bad, "relation_values",
                f"each c must cover at least one of the {n_rel} relations (c >= 1/{n_rel})")


@dataclasses.dataclass
class SizeConfig(ExtractionConfig):
    """Grids: fine-tuning sizes N_f, for each (K, tau) setup (the first one is judged)."""

    values: tuple[int, ...] = (300, 1000, 3000, 10000)
    setups: tuple[str, ...] = ("4:8", "2:8", "4:16")  # "K:tau" each

    def parsed_setups(self) -> list[tuple[int, int]]:
        """The setups as (K, tau) pairs."""
        return [tuple(int(v) for v in s.split(":")) for s in self.setups]  # type: ignore[misc]

    def check(self) -> None:
        super().check()
        require(len(self.values) >= 2 and list(self.values) == sorted(self.values), "values",
                "needs at least two sizes, ascending")
        ok = all(len(s.split(":")) == 2 and all(v.isdigit() for v in s.split(":"))
                 for s in self.setups)
        require(len(self.setups) >= 1 and ok, "setups", "each must be K:tau, e.g. 2:8")
        bad = [s for s, (k, t) in zip(self.setups, self.parsed_setups()) if not 1 <= k <= t]
        require(not bad, "setups", f"each needs 1 <= K <= tau; got {bad}")


# long noisy layout of extraction-coverage: attention must pick s and T out of 14 noise tokens
LONG = {**QUICK, "corpus.seq_len": 16, "corpus.n_noise": 64, "model.d_model": 128,
        "model.d_head": 128, "pretrain.steps": 6000}

EXTRACTION_MULTIPLICITY = Experiment(
    name="extraction-multiplicity",
    claim="Held-out extraction accuracy rises with the pre-training multiplicity K, overall and "
          "on the covered-and-seen cell.",
    config=MultiplicityConfig, run=run_multiplicity,
    figures=make_trend_figure("K", "multiplicity K", EXTRACTION_RULE, log_x=True),
    presets={"quick": {**QUICK, "values": "1,2,4"}, "paper": PAPER},
)

EXTRACTION_UNIVERSE = Experiment(
    name="extraction-universe",
    claim="At fixed K and fine-tuning size, held-out extraction falls as the relation-template "
          "universe |R| grows, overall and on the covered-and-seen cell.",
    config=UniverseConfig, run=run_universe,
    figures=make_trend_figure("universe_size", "universe size $|R|$", EXTRACTION_RULE,
                              log_x=True, sign=-1),
    presets={"quick": {**QUICK, "values": "2,4,8"}, "paper": PAPER},
)

EXTRACTION_COVERAGE = Experiment(
    name="extraction-coverage",
    claim="Held-out extraction rises with fine-tuning coverage c; at small c > 0 the facts of "
          "relations fine-tuning never touched are stored and retained but inaccessible.",
    config=CoverageConfig, run=run_coverage,
    figures=functools.partial(figures_coverage, rule=EXTRACTION_RULE),
    presets={"quick": {**LONG, "values": "0,0.0625,0.25,0.5,1", "relation_values": "0.25,0.5"},
             "paper": PAPER},
)

EXTRACTION_SIZE = Experiment(
    name="extraction-size",
    claim="Held-out extraction rises with the fine-tuning size Ñ_f; pooled over K, |R| and Ñ_f, "
          "log held-out error falls with x = Ñ_f K² log|R| / (2|R|²) (reported with its fit).",
    config=SizeConfig, run=run_size, figures=functools.partial(figures_size, rule=EXTRACTION_RULE),
    presets={"quick": {**QUICK, "values": "100,300,1000", "setups": "2:4,1:4,2:8"},
             "paper": PAPER},
)
