"""The extraction protocol on a real causal LM (specs/knowledge_extraction.md §9.4).

Protocol A (controlled multiplicity, K >= 1):
  1. every PopQA triple becomes K declarative sentences, from K distinct templates of its
     relation (our own `DECLARATIVE` templates, four per relation, the object always last);
  2. continued pre-training (causal-LM loss) on the sentences of *all* subjects;
  3. Q&A fine-tuning (``Q: {question} A: {obj}``, loss on the answer only), full or LoRA, on
     the P_train subjects of the covered relation types;
  4. greedy Q&A on the held-out P_test subjects, scored by the PopQA rule and bucketed by
     covered vs uncovered relation and by `s_pop`.
Protocol B (K = 0): no continued pre-training; `s_pop` stands in for multiplicity.

Every step is seeded by explicit generators: the same config gives the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from factlab.config import ConfigError
from factlab.models.hf import HFModel
from factlab.runtime import make_generator
from factlab.tasks.popqa import (
    PopQARow,
    few_shot_prompt,
    first_line,
    is_correct,
    is_correct_normalised,
    qa_prompt,
)
from factlab.train.loop import EpochBatches, TrainConfig, train

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
}
N_TEMPLATES = 4


@dataclasses.dataclass(frozen=True)
class Split:
    """Which rows are P_train / P_test and which relation types are covered."""

    train: list[int]  # row indices of P_train subjects
    test: list[int]  # row indices of P_test subjects
    covered: frozenset[int]  # covered prop_ids


def make_split(rows: Sequence[PopQARow], test_frac: float, coverage: float,
               gen: torch.Generator) -> Split:
    """Split subjects (not rows) into P_train/P_test and draw round(c * n_rel) covered types."""
    subjects = sorted({r.subj for r in rows})
    order = torch.randperm(len(subjects), generator=gen).tolist()
    n_test = min(len(subjects) - 1, max(1, round(test_frac * len(subjects))))
    test_subj = {subjects[i] for i in order[:n_test]}
    relations = sorted({r.prop_id for r in rows})
    perm = torch.randperm(len(relations), generator=gen).tolist()
    covered = frozenset(relations[i] for i in perm[:round(coverage * len(relations))])
    train = [i for i, r in enumerate(rows) if r.subj not in test_subj]
    test = [i for i, r in enumerate(rows) if r.subj in test_subj]
    return Split(train, test, covered)


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


@dataclasses.dataclass
class Batch:
    """Right-padded token ids, attention mask and labels (-100 where no loss)."""

    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor


def encode_pairs(hf: HFModel, pairs: Sequence[tuple[str, str]], loss_on_prompt: bool,
                 sep: str = " ", end: str = "") -> Batch:
    """Encode (prompt, answer) pairs as prompt + sep + answer + end + EOS, right-padded.

    The loss covers the answer and EOS, and the prompt too when `loss_on_prompt` (plain
    language modelling). Prompt and answer are tokenised apart, so the answer's tokens are the
    same in every prompt.
    """
    tok = hf.tokenizer
    eos = tok.eos_token_id
    seqs, labs = [], []
    for prompt, answer in pairs:
        p = tok(prompt, add_special_tokens=True)["input_ids"]
        a = tok(sep + answer + end, add_special_tokens=False)["input_ids"] + [eos]
        seqs.append(p + a)
        labs.append((p if loss_on_prompt else [-100] * len(p)) + a)
    width = max(len(s) for s in seqs)
    pad = tok.pad_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, l) in enumerate(zip(seqs, labs)):
        ids[i, :len(s)] = torch.tensor(s)
        labels[i, :len(l)] = torch.tensor(l)
        mask[i, :len(s)] = 1
    return Batch(ids, mask, labels)


def train_lm(model: torch.nn.Module, batch: Batch, tcfg: TrainConfig, gen: torch.Generator,
             device: torch.device, on_eval: Callable[[int, dict], None] | None = None,
             show_progress: bool = False, desc: str = "train") -> dict[str, float]:
    """Minimise the causal-LM loss on `batch`, in seeded epochs of shuffled minibatches."""
    batches = EpochBatches(batch.ids.shape[0], tcfg.batch_size, gen)

    def loss_fn(step: int) -> torch.Tensor:
        idx = batches(step)
        ids, mask, labels = (t[idx].to(device) for t in (batch.ids, batch.mask, batch.labels))
        width = int(mask.sum(-1).max())  # drop columns that are padding in the whole batch
        return model(input_ids=ids[:, :width], attention_mask=mask[:, :width],
                     labels=labels[:, :width], use_cache=False).loss

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    result = train(params, loss_fn, tcfg, None, on_eval, show_progress=show_progress, desc=desc)
    model.eval()
    result.raise_if_diverged()
    return result.last_eval


@torch.no_grad()
def generate(model: torch.nn.Module, hf: HFModel, prompts: Sequence[str], max_new_tokens: int,
             batch_size: int = 32) -> list[str]:
    """Greedy continuations of `prompts` (left-padded batches); each cut to its first line."""
    tok = hf.tokenizer
    out: list[str] = []
    model.eval()
    for start in range(0, len(prompts), batch_size):
        enc = tok(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True)
        ids = enc["input_ids"].to(hf.device)
        gen_ids = model.generate(input_ids=ids, attention_mask=enc["attention_mask"].to(hf.device),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 num_beams=1, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        texts = tok.batch_decode(gen_ids[:, ids.shape[1]:], skip_special_tokens=True)
        out += [first_line(t) for t in texts]
    return out


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


def lora_wrap(model: torch.nn.Module, rank: int, target_modules: Sequence[str]) -> torch.nn.Module:
    """peft LoRA (alpha = rank, no dropout) on `target_modules`; GPT-2's Conv1D gets fan_in_fan_out."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D


    targets = list(target_modules) or default_targets(model)
    hits = [m for n, m in model.named_modules() if n.split(".")[-1] in targets]
    if not hits:
        names = sorted({n.split(".")[-1] for n, m in model.named_modules()
                        if isinstance(m, (torch.nn.Linear, Conv1D))})
        raise ConfigError(f"target_modules: none of {targets} in the model; "
                          f"its linear layers are {', '.join(names)}")
    conv = any(isinstance(m, Conv1D) for m in hits)
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets,
                        fan_in_fan_out=conv, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def default_targets(model: torch.nn.Module) -> list[str]:
    """c_attn for GPT-2 (a Conv1D), q_proj and v_proj for Llama-style models."""
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    if "c_attn" in names:
        return ["c_attn"]
    if {"q_proj", "v_proj"} <= names:
        return ["q_proj", "v_proj"]
    return ["query", "value"] if {"query", "value"} <= names else ["c_attn"]


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


def protocol_texts(rows: Sequence[PopQARow]) -> list[str]:
    """Every string the protocol can feed a model for `rows` (to build a test vocabulary)."""
    texts = [f"Q: {r.question} A: {' '.join(r.answers)} {r.obj}." for r in rows]
    texts += [" ".join(DECLARATIVE[r.prop_id]).format(s=r.subj, o=r.obj) + "." for r in rows]
    return texts
