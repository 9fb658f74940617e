"""Probes of in-context factual recall, taken at the query position (arXiv 2605.27774).

Positions of a prompt with k pairs: subjects 0, 2, ..., 2k-2; answers 1, 3, ..., 2k-1; the
query subject s_q at 2k; EOS (if any) at 2k+1. From the query's attention row alpha [B, T]:

    alpha_q = alpha[2k]                    weight on the query subject (self-weight without EOS)
    A_S     = sum_i alpha[s_i],  A_A = sum_i alpha[a_i],  A_other = EOS (and anything else)

The pattern statistics are *aggregates* over prompts, so per-prompt cross-talk noise averages
out instead of setting a floor (the per-pair PSI/CV of earlier versions had a floor of ~0.1-0.2
from random-embedding noise alone):

    role asymmetry  = |mean A_S - mean A_A| / (mean A_S + mean A_A)      0: pairs split equally
    pair spread     = std_i(w_i) / mean_i(w_i),  w_i = mean over prompts of alpha_si + alpha_ai
                                                                         0: pairs weighted equally

`isotropic_qk` builds the null these are judged against: the model's W_QK projected on c I.
Also: the oracle check of a constructed memory and the binomial interval of an accuracy.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from factlab.knowledge import KnowledgeBase
from factlab.models.ic_memory import FrozenMemory
from factlab.models.ic_model import ICRecallModel
from factlab.probes.metrics import relation_only, subject_only
from factlab.tasks.ic_recall import ICTaskConfig, ICVocab, all_triplets, sample_ic_recall

WILSON_Z = 1.959964  # two-sided 95%


def role_masses(pattern: torch.Tensor, k: int) -> dict[str, float]:
    """alpha_q, A_S, A_A, A_other (batch means) and the two aggregate pattern statistics."""
    p = pattern.double()
    a_s, a_a = p[:, 0:2 * k:2], p[:, 1:2 * k:2]  # [B, k]
    alpha_q = p[:, 2 * k]
    A_S, A_A = a_s.sum(1).mean(), a_a.sum(1).mean()
    pair = (a_s + a_a).mean(0)  # [k] mean weight of each pair slot
    other = p.sum(1).mean() - alpha_q.mean() - A_S - A_A
    return {"alpha_q": alpha_q.mean().item(), "A_S": A_S.item(), "A_A": A_A.item(),
            "A_other": other.item(),
            "asym": ((A_S - A_A).abs() / (A_S + A_A).clamp_min(1e-12)).item(),
            "spread": (pair.std(unbiased=False) / pair.mean().clamp_min(1e-12)).item()}


def rival_statistics(k: int) -> dict[str, float]:
    """The statistics of the rival patterns: answers only or subjects only (asym 1), half of
    the pairs (spread 1) and one pair only (spread sqrt(k - 1)); the nearest rival of each."""
    return {"asym": 1.0, "spread": min(1.0, math.sqrt(max(k - 1, 0))) if k > 1 else math.inf}


def isotropic_qk(W_QK: torch.Tensor) -> torch.Tensor:
    """The projection of W_QK [H, d, d] on c I (c = trace / d per head): the null model.

    Its score c <x_T + p_T, x_t + p_t> cannot use a learned direction that tells a subject
    from an answer, so whatever role asymmetry it shows is geometry, not learning.
    """
    d = W_QK.shape[-1]
    c = W_QK.diagonal(dim1=-2, dim2=-1).sum(-1) / d  # [H]
    return c[:, None, None] * torch.eye(d, device=W_QK.device, dtype=W_QK.dtype)


@contextlib.contextmanager
def swapped_qk(model: ICRecallModel, W_QK: torch.Tensor) -> Iterator[ICRecallModel]:
    """Run `model` with its W_QK temporarily replaced (restored on exit)."""
    param = model.blocks[0].attn.W_QK
    saved = param.detach().clone()
    with torch.no_grad():
        param.copy_(W_QK)
    try:
        yield model
    finally:
        with torch.no_grad():
            param.copy_(saved)


def recall_metrics(logits: torch.Tensor, labels: torch.Tensor, query_subjects: torch.Tensor,
                   kb: KnowledgeBase, disjoint: bool = True) -> dict[str, float]:
    """Accuracy, cross-entropy, relation-only and subject-only loss/accuracy at the query.

    Relation-only needs disjoint answer blocks; with a shared pool it is left out.
    """
    out = {"acc": (logits.argmax(-1) == labels).float().mean().item(),
           "loss": F.cross_entropy(logits, labels).item()}
    if disjoint:
        out.update(relation_only(logits, labels, kb))
    out.update(subject_only(logits, labels, query_subjects, kb, structured=False))
    return out


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default); (0, 1) if no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def ideal_inputs(batch: dict[str, torch.Tensor], W_E: torch.Tensor, voc: ICVocab,
                 gamma: float, kbeta: float, key: str = "b") -> torch.Tensor:
    """The attention output of the target pattern: gamma phi(s_q) + beta sum_i (phi(s_i) + v_i).

    v_i = phi(a_i) for key (b) (W_OV = I) and phi(r) for key (a) (the ideal W_OV maps each
    answer to its relation). Returns [B, d] on W_E's device.
    """
    dev = W_E.device
    subj = batch["subjects"].to(dev)
    k = subj.shape[1] - 1
    beta = kbeta / k
    if key == "a":
        v = W_E[voc.relation(batch["relation"].to(dev))][:, None, :].expand(-1, k, -1)
    else:
        v = W_E[voc.answer(batch["context_answers"].to(dev))]
    return gamma * W_E[subj[:, -1]] + beta * (W_E[subj[:, :-1]] + v).sum(1)


@torch.no_grad()
def oracle_accuracy(memory: FrozenMemory, W_E: torch.Tensor, W_U: torch.Tensor,
                    kb: KnowledgeBase, task: ICTaskConfig, gamma: float, kbeta: float,
                    key: str, gen: torch.Generator, limit: int = 1 << 15, chunk: int = 4096
                    ) -> float:
    """Accuracy of y = x + F(x) on the ideal input x of every triplet (one random context each).

    Enumerates all SR triplets when SR <= `limit`, else samples `limit`; evaluated in chunks.
    """
    s, r = all_triplets(kb, limit, gen)
    hits = 0
    for start in range(0, len(s), chunk):
        batch = sample_ic_recall(kb, task, 0, gen, s[start:start + chunk], r[start:start + chunk])
        x = ideal_inputs(batch, W_E, task.vocab, gamma, kbeta, key)
        logits = (x + memory(x)) @ W_U
        hits += (logits.argmax(-1).cpu() == batch["answer"]).sum().item()
    return hits / len(s)
