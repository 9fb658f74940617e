"""The extraction protocol's data side on a real causal LM: templates, splits, prompts, scores.

The protocol (arXiv 2508.00901's design on real data; docs/realmodels.md):
  0. knowledge probe: zero- and few-shot PopQA accuracy of the untouched model, per relation
     and popularity bin (what it knew before);
  1. every fact becomes K declarative sentences from K distinct templates of its relation
     (our own `DECLARATIVE` templates, four per relation, the object always last);
  2. continued pre-training (causal-LM loss) on the sentences of the P_train and P_test
     subjects; a control group of subjects is left out, so that what fine-tuning teaches about
     a relation's answers (its prior) is not counted as extraction;
  3. Q&A fine-tuning (``Q: {question} A: {obj}``, loss on the answer only), full or LoRA, on
     the P_train subjects of the covered relation types;
  4. greedy Q&A on P_test and control subjects, scored by the PopQA rule and bucketed by
     covered vs uncovered relation and by `s_pop`.
K = 0 skips 1-2 (popularity stands in for multiplicity).

Every step is seeded by explicit generators: the same config gives the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from factlab.models.hf import HFModel
from factlab.pipelines.hf_lm import generate
from factlab.runtime import make_generator
from factlab.tasks.popqa import (
    PopQARow,
    few_shot_prompt,
    is_correct,
    is_correct_normalised,
    qa_prompt,
)

#: Declarative templates by prop_id; "{s}" is the subject, "{o}" the object (always last).
DECLARATIVE: dict[int, tuple[str, ...]] = {
    22: ("{s} works as {o}", "By profession, {s} is {o}", "{s} earns a living as {o}",
         "The occupation of {s} is {o}"),
    218: ("{s} was born in {o}", "The birthplace of {s} is {o}", "{s} came into the world in {o}",
          "The city where {s} was born is {o}"),
    91: ("{s} belongs to the genre {o}", "The genre of {s} is {o}", "{s} is a work of {o}",
         "Critics file {s} under {o}"),
    257: ("The father of {s} is {o}", "{s} is the child of {o}", "{s} was fathered by {o}",
          "The dad of {s} is {o}"),
    182: ("{s} is located in {o}", "{s} lies in the country {o}", "The country of {s} is {o}",
          "{s} can be found in {o}"),
    164: ("{s} was produced by {o}", "The producer of {s} is {o}", "{s} had as its producer {o}",
          "Production of {s} was led by {o}"),
    526: ("{s} was directed by {o}", "The director of {s} is {o}", "{s} had as its director {o}",
          "Direction of {s} was by {o}"),
    97: ("{s} is the capital of {o}", "{s} serves as the capital city of {o}",
         "{s} is the seat of government of {o}", "{s} is the capital city of {o}"),
    533: ("{s} was written by {o}", "The screenwriter of {s} is {o}", "The script of {s} is by {o}",
          "{s} had as its screenwriter {o}"),
    639: ("{s} was composed by {o}", "The composer of {s} is {o}", "The music of {s} is by {o}",
          "{s} had as its composer {o}"),
    472: ("{s} has the color {o}", "The color of {s} is {o}", "{s} is coloured {o}",
          "The hue of {s} is {o}"),
    106: ("{s} follows the religion {o}", "The religion of {s} is {o}", "{s} is an adherent of {o}",
          "By faith, {s} belongs to {o}"),
    560: ("{s} plays {o}", "The sport of {s} is {o}", "{s} competes in {o}",
          "{s} is a professional player of {o}"),
    484: ("{s} was written by {o}", "The author of {s} is {o}", "{s} is a book by {o}",
          "{s} had as its author {o}"),
    292: ("The mother of {s} is {o}", "{s} was born to the mother {o}", "The mom of {s} is {o}",
          "{s} is the child of the mother {o}"),
    422: ("The capital of {s} is {o}", "{s} has its capital in {o}", "The capital city of {s} is {o}",
          "{s} is governed from {o}"),
    # factlab's relations beyond PopQA's (tasks.popqa.EXTRA_TEMPLATES)
    30: ("{s} is a country in {o}", "{s} lies on the continent of {o}", "The continent of {s} is {o}",
         "{s} is part of the continent {o}"),
    361: ("{s} is a country of {o}", "{s} lies in the region of {o}", "The subregion of {s} is {o}",
          "Geographers place {s} in {o}"),
    1549: ("The people of {s} are called {o}", "A citizen of {s} is {o}",
           "The demonym of {s} is {o}", "Someone from {s} is called {o}"),
    47: ("{s} shares a border with {o}", "{s} borders {o}", "A neighbour of {s} is {o}",
         "On the border of {s} lies {o}"),
}
N_TEMPLATES = 4


@dataclasses.dataclass(frozen=True)
class Split:
    """Which rows are P_train / P_test / control and which relation types are covered."""

    train: list[int]  # row indices of P_train subjects (pre-trained and fine-tuned)
    test: list[int]  # row indices of P_test subjects (pre-trained, never fine-tuned)
    covered: frozenset[int]  # covered prop_ids
    control: list[int] = dataclasses.field(default_factory=list)  # never pre-trained nor tuned


def make_split(rows: Sequence[PopQARow], test_frac: float, coverage: float,
               gen: torch.Generator, control_frac: float = 0.0) -> Split:
    """Split subjects (not rows) into P_train/P_test/control; draw round(c * n_rel) covered types.

    The control group takes `control_frac` of the subjects, P_test `test_frac` of the rest.
    """
    subjects = sorted({r.subj for r in rows})
    order = torch.randperm(len(subjects), generator=gen).tolist()
    n_control = min(len(subjects) - 2, round(control_frac * len(subjects))) if control_frac else 0
    control_subj = {subjects[i] for i in order[:n_control]}
    rest = order[n_control:]
    n_test = min(len(rest) - 1, max(1, round(test_frac * len(rest))))
    test_subj = {subjects[i] for i in rest[:n_test]}
    relations = sorted({r.prop_id for r in rows})
    perm = torch.randperm(len(relations), generator=gen).tolist()
    covered = frozenset(relations[i] for i in perm[:round(coverage * len(relations))])
    train = [i for i, r in enumerate(rows) if r.subj not in test_subj | control_subj]
    test = [i for i, r in enumerate(rows) if r.subj in test_subj]
    control = [i for i, r in enumerate(rows) if r.subj in control_subj]
    return Split(train, test, covered, control)


def fact_templates(n_rows: int, K: int, gen: torch.Generator) -> torch.Tensor:
    """J(s, r): K distinct template indices per row, drawn without replacement [n_rows, K]."""
    keys = torch.rand(n_rows, N_TEMPLATES, generator=gen)
    return keys.argsort(dim=-1)[:, :K]


def declarative(row: PopQARow, j: int) -> tuple[str, str]:
    """(prefix, object) of template j for a row: the sentence is prefix + " " + obj + "."."""
    template = DECLARATIVE[row.prop_id][j]
    prefix = template.split("{o}")[0].rstrip().format(s=row.subj)
    return prefix, row.obj


def make_corpus(rows: Sequence[PopQARow], J: torch.Tensor) -> list[tuple[str, str]]:
    """The continued-pre-training corpus: (prefix, object) for every row and j in J(row)."""
    return [declarative(row, j) for row, js in zip(rows, J.tolist()) for j in js]


def score(predictions: Sequence[str], rows: Sequence[PopQARow]) -> tuple[list[bool], list[bool]]:
    """(PopQA-rule correctness, normalised-rule correctness) per row."""
    strict = [is_correct(p, r.answers) for p, r in zip(predictions, rows)]
    loose = [is_correct_normalised(p, r.answers) for p, r in zip(predictions, rows)]
    return strict, loose


def mean(values: Sequence[bool | float]) -> float:
    """Mean, or NaN for an empty bucket."""
    return float(sum(values) / len(values)) if values else float("nan")


def pop_bins(rows: Sequence[PopQARow], n_bins: int) -> list[int]:
    """Equal-count `s_pop` bins (0 = least popular) by rank, ties broken by row order."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i].s_pop, i))
    bins = [0] * len(rows)
    for rank, i in enumerate(order):
        bins[i] = min(n_bins - 1, rank * n_bins // max(1, len(rows)))
    return bins


def evaluate_qa(model: torch.nn.Module, hf: HFModel, rows: Sequence[PopQARow],
                prompts: Sequence[str], max_new_tokens: int) -> dict[str, Any]:
    """Greedy answers to `prompts` scored against `rows`: per-row correctness and predictions."""
    preds = generate(model, hf, prompts, max_new_tokens)
    strict, loose = score(preds, rows)
    return {"correct": strict, "correct_norm": loose, "predictions": preds}


def qa_prompts(rows: Sequence[PopQARow]) -> list[str]:
    """Zero-shot ``Q: {question} A:`` prompts."""
    return [qa_prompt(r.question) for r in rows]


def fewshot_prompts(rows: Sequence[PopQARow], pool: Sequence[PopQARow], k: int,
                    seed: int) -> list[str]:
    """PopQA-style few-shot prompts: k demonstrations from the pool's other relation types."""
    gen = make_generator(seed)
    return [few_shot_prompt(r, pool, k, gen) for r in rows]


def probe_sample(rows: Sequence[PopQARow], per_relation: int, gen: torch.Generator) -> list[int]:
    """Indices of at most `per_relation` rows of each relation, drawn without replacement."""
    picked: list[int] = []
    for prop in sorted({r.prop_id for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.prop_id == prop]
        order = torch.randperm(len(idx), generator=gen).tolist()[:per_relation]
        picked += sorted(idx[i] for i in order)
    return picked


def knowledge_probe(model: torch.nn.Module, hf: HFModel, rows: Sequence[PopQARow],
                    pool: Sequence[PopQARow], fewshot_k: int, seed: int,
                    max_new_tokens: int) -> dict[str, list]:
    """What the model answers before training: zero-shot and PopQA few-shot, per row.

    Demonstrations come from `pool` (other relation types than the target's, as in PopQA).
    """
    zero = evaluate_qa(model, hf, rows, qa_prompts(rows), max_new_tokens)
    out = {"zero": zero["correct"], "zero_pred": zero["predictions"]}
    if fewshot_k:
        few = evaluate_qa(model, hf, rows, fewshot_prompts(rows, pool, fewshot_k, seed),
                          max_new_tokens)
        out.update(few=few["correct"], few_pred=few["predictions"])
    return out


def grouped_accuracy(rows: Sequence[PopQARow], values: dict[str, Sequence[bool]],
                     n_pop_bins: int) -> list[dict[str, Any]]:
    """Accuracy of each `values` column per relation and per equal-count `s_pop` bin."""
    out: list[dict[str, Any]] = []
    for prop in sorted({r.prop_id for r in rows}):
        idx = [i for i, r in enumerate(rows) if r.prop_id == prop]
        out.append({"group": "relation", "prop_id": prop, "prop": rows[idx[0]].prop,
                    "n": len(idx), **{k: mean([v[i] for i in idx]) for k, v in values.items()}})
    bins = pop_bins(rows, n_pop_bins)
    for b in range(n_pop_bins):
        idx = [i for i, x in enumerate(bins) if x == b]
        if idx:
            pops = sorted(rows[i].s_pop for i in idx)
            out.append({"group": "pop_bin", "bin": b, "n": len(idx),
                        "s_pop_median": pops[len(pops) // 2],
                        **{k: mean([v[i] for i in idx]) for k, v in values.items()}})
    return out


def protocol_texts(rows: Sequence[PopQARow]) -> list[str]:
    """Every string the protocol can feed a model for `rows` (to build a test vocabulary)."""
    texts = [f"Q: {r.question} A: {' '.join(r.answers)} {r.obj}." for r in rows]
    texts += [" ".join(DECLARATIVE.get(r.prop_id, ())).format(s=r.subj, o=r.obj) + "."
              for r in rows]
    return texts
