"""Metrics and mechanistic probes. A probe is a function of (model outputs, batch) -> floats.

This module holds the metrics every factual-recall experiment shares; topic-specific probes
live beside it (one module per family).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from factlab.knowledge import KnowledgeBase


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose argmax equals the label."""
    return (logits.argmax(-1) == labels).float().mean().item()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean -log p[label]."""
    return F.cross_entropy(logits, labels).item()


def block_log_mass(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log sum_{a in mask} p(a) per row; `mask` is [batch, n_out] boolean."""
    logp = logits.log_softmax(-1)
    return torch.logsumexp(logp.masked_fill(~mask, float("-inf")), dim=-1)


def relation_only(logits: torch.Tensor, labels: torch.Tensor, kb: KnowledgeBase) -> dict[str, float]:
    """Loss and accuracy of getting the relation's answer block right (2412 §8.5).

    loss = -log sum_{a in A_r(y)} p(a); acc: the argmax lies in the label's block.
    """
    blocks = kb.relation_of_answer(torch.arange(kb.n_outputs, device=logits.device))
    mask = blocks[None, :] == kb.relation_of_answer(labels)[:, None]
    return {"loss_relation": -block_log_mass(logits, mask).mean().item(),
            "acc_relation": mask.gather(1, logits.argmax(-1, keepdim=True)).float().mean().item()}


def subject_only(logits: torch.Tensor, labels: torch.Tensor, subjects: torch.Tensor,
                 kb: KnowledgeBase, structured: bool) -> dict[str, float]:
    """Loss and accuracy of getting the subject's answer right up to the relation.

    Structured tables: mass on {a : a mod D = y mod D} (the within-block index the subject
    fixes). Random tables: mass on {a*(s, r') : r'} (the subject's answers for every relation).
    """
    n_out, D = kb.n_outputs, kb.n_answers_per_relation
    outs = torch.arange(n_out, device=logits.device)
    if structured:
        mask = (outs[None, :] % D) == (labels % D)[:, None]
    else:
        answers = kb.answers.to(logits.device)[subjects]  # [batch, R]
        mask = torch.zeros(len(labels), n_out, dtype=torch.bool, device=logits.device)
        mask.scatter_(1, answers, True)
    return {"loss_subject": -block_log_mass(logits, mask).mean().item(),
            "acc_subject": mask.gather(1, logits.argmax(-1, keepdim=True)).float().mean().item()}
