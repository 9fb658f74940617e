"""The knowledge base: S subjects, R relations, and a*(s, r) in disjoint answer blocks.

Relation r owns the output ids [r*D, (r+1)*D) (arXiv 2412.06538). A random base draws
a*(s, r) uniformly from its block, i.i.d. over (s, r); the structured base of the sequential-
learning experiment sets a*(s, r) = floor(s / (S / D)) + D*r, so the subject alone fixes the
position inside the block.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from factlab.config import ConfigError


@dataclasses.dataclass(frozen=True)
class KnowledgeBase:
    """A fact table `answers[s, r]` with values in relation r's answer block."""

    answers: torch.Tensor  # [S, R] int64 output ids
    n_answers_per_relation: int  # D

    @property
    def n_subjects(self) -> int:
        return self.answers.shape[0]

    @property
    def n_relations(self) -> int:
        return self.answers.shape[1]

    @property
    def n_outputs(self) -> int:
        """Size of the answer vocabulary, R*D."""
        return self.n_relations * self.n_answers_per_relation

    @property
    def n_facts(self) -> int:
        return self.n_subjects * self.n_relations

    def relation_of_answer(self, answer: torch.Tensor) -> torch.Tensor:
        """The relation whose block contains each answer id."""
        return answer // self.n_answers_per_relation

    def lookup(self, subject: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """a*(s, r) for batched subject and relation ids."""
        return self.answers.to(subject.device)[subject, relation]


def make_knowledge_base(n_subjects: int, n_relations: int, n_answers: int, seed: int = 64,
                        kind: Literal["random", "structured"] = "random") -> KnowledgeBase:
    """Build a knowledge base of S x R facts with D answers per relation.

    `kind="random"` draws every a*(s, r) uniformly from block r with its own generator
    seeded by `seed` (the reference code uses 64). `kind="structured"` needs D to divide S.
    """
    S, R, D = n_subjects, n_relations, n_answers
    if min(S, R, D) < 1:
        raise ConfigError(f"knowledge base sizes must be >= 1, got S={S}, R={R}, D={D}")
    offsets = torch.arange(R) * D
    if kind == "structured":
        if S % D:
            raise ConfigError(f"structured knowledge base needs D | S, got S={S}, D={D}")
        within = torch.arange(S) // (S // D)
        table = within[:, None] + offsets[None, :]
    elif kind == "random":
        gen = torch.Generator().manual_seed(seed)
        table = torch.randint(0, D, (S, R), generator=gen) + offsets[None, :]
    else:
        raise ConfigError(f"knowledge base kind must be 'random' or 'structured', got {kind!r}")
    return KnowledgeBase(table.long(), D)


def zipf_weights(n: int, exponent: float) -> torch.Tensor:
    """Probabilities proportional to rank^(-exponent), rank = 1..n (0 gives uniform)."""
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    w = ranks.pow(-exponent)
    return (w / w.sum()).float()
