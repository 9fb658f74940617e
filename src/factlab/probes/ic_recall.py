"""Probes of in-context factual recall (specs/ic_recall.md §7), taken at the query position.

Positions of a prompt with k pairs: subjects 0, 2, ..., 2k-2; answers 1, 3, ..., 2k-1; the
query subject s_q at 2k; EOS (if any) at 2k+1. From the query's attention row alpha [B, T]:

    alpha_q = alpha[2k]                    weight on the query subject (self-weight without EOS)
    A_S     = sum_i alpha[s_i],  A_A = sum_i alpha[a_i],  A_other = EOS (and anything else)
    PSI     = mean_i |alpha_si - alpha_ai| / (alpha_si + alpha_ai + 1e-12)   0: pairs symmetric
    CV      = std_i(alpha_si + alpha_ai) / mean_i(alpha_si + alpha_ai)       0: pairs uniform

Each is averaged over the batch. CV uses the population std (ddof 0), so k = 1 gives 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from factlab.knowledge import KnowledgeBase
from factlab.probes.metrics import relation_only, subject_only


def role_masses(pattern: torch.Tensor, k: int) -> dict[str, float]:
    """alpha_q, A_S, A_A, A_other, PSI and CV from the query's attention rows [B, T]."""
    p = pattern.double()
    a_s, a_a = p[:, 0:2 * k:2], p[:, 1:2 * k:2]  # [B, k]
    alpha_q = p[:, 2 * k]
    A_S, A_A = a_s.sum(1), a_a.sum(1)
    pair = a_s + a_a
    psi = ((a_s - a_a).abs() / (pair + 1e-12)).mean(1)
    cv = pair.std(1, unbiased=False) / pair.mean(1).clamp_min(1e-12)
    other = p.sum(1) - alpha_q - A_S - A_A
    return {"alpha_q": alpha_q.mean().item(), "A_S": A_S.mean().item(),
            "A_A": A_A.mean().item(), "A_other": other.mean().item(),
            "psi": psi.mean().item(), "cv": cv.mean().item()}


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
