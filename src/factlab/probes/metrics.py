"""Metrics and mechanistic probes. A probe is a function of (model outputs, batch) -> floats.

This module holds what every family shares: the ONE accuracy (`accuracy`, with `correct` for
per-row or per-member tallies) and the ONE chunked forward (`forward_chunks`), plus the
factual-recall losses; topic-specific probes live beside it (one module per family).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from factlab.knowledge import KnowledgeBase

EVAL_CHUNK = 1024  # rows per forward pass when evaluating: bounds activation memory


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Boolean tensor: whether each row's argmax (over the last dim) equals its label.

    Works for any leading shape, e.g. [N members, n rows, M] logits with [n] or [N, n] labels.
    """
    return logits.argmax(-1) == labels


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose argmax equals the label."""
    return correct(logits, labels).float().mean().item()


def _cat(parts: list[Any]) -> Any:
    """Concatenate chunk outputs along dim 0: tensors, and tuples/lists/dicts of them."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping):
        return {k: _cat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_cat(list(col)) for col in zip(*parts))
    raise TypeError(f"forward_chunks cannot concatenate {type(first).__name__}")


def _rows(inputs: Any, start: int, stop: int) -> Any:
    if isinstance(inputs, Mapping):
        return {k: v[start:stop] for k, v in inputs.items()}
    return inputs[start:stop]


@torch.no_grad()
def forward_chunks(fn: Callable[[Any], Any], inputs: torch.Tensor | Mapping[str, torch.Tensor],
                   chunk: int = EVAL_CHUNK) -> Any:
    """`fn(inputs)` computed `chunk` rows at a time without gradients, outputs concatenated.

    `inputs` is a tensor or a dict of tensors sharing dim 0 (a batch); `fn` returns a tensor or
    a tuple/list/dict of tensors with the rows on dim 0, e.g. `model` for logits, or
    `lambda x: model.run_with_cache(x, names_filter=...)` for (logits, cache). Equal to one
    full forward up to float rounding, with memory bounded by `chunk`.
    """
    n = len(next(iter(inputs.values()))) if isinstance(inputs, Mapping) else len(inputs)
    parts = [fn(_rows(inputs, i, min(i + chunk, n))) for i in range(0, n, chunk)]
    if not parts:
        raise ValueError("forward_chunks needs at least one row")
    return _cat(parts)


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
