"""Task A of arXiv 2412.06538: a subject and a relation among noise tokens, then EOS.

Token ids of the input vocabulary: subjects [0, S), relations [S, S+R), noise
[S+R, S+R+n_noise), and EOS = S+R+n_noise (the last id). Each prompt has T positions:
every slot starts as uniform noise, the subject goes to a uniform slot in 0..T-2, the relation
to a different uniform slot in 0..T-2, and EOS to T-1. With `eos=False` the relation takes the
last slot instead. The label is a*(s, r), an output id in [0, R*D).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch

from factlab.config import require
from factlab.knowledge import KnowledgeBase, zipf_weights


@dataclasses.dataclass
class RecallTaskConfig:
    """Knowledge-base sizes and prompt layout of the factual-recall task."""

    n_subjects: int = 32  # S
    n_relations: int = 32  # R
    n_answers: int = 8  # D, answers per relation
    n_noise: int = -1  # noise tokens; -1 means S + R as in the reference
    seq_len: int = 32  # T
    eos: bool = True
    subject_zipf: float = 0.0  # alpha: p(s) ~ rank^-alpha
    relation_zipf: float = 0.0  # beta: p(r) ~ rank^-beta
    kb_seed: int = 64
    kb_kind: str = "random"  # "random" or "structured"

    def check(self) -> None:
        for key in ("n_subjects", "n_relations", "n_answers"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.n_noise >= -1, "n_noise", "must be >= 0 (or -1 for S + R)")
        require(self.seq_len >= 3, "seq_len", f"must be >= 3, got {self.seq_len}")
        require(self.subject_zipf >= 0, "subject_zipf", "must be >= 0")
        require(self.relation_zipf >= 0, "relation_zipf", "must be >= 0")
        require(self.kb_kind in ("random", "structured"), "kb_kind",
                f"must be 'random' or 'structured', got {self.kb_kind!r}")
        if self.kb_kind == "structured":
            require(self.n_subjects % self.n_answers == 0, "kb_kind",
                    "'structured' needs n_answers to divide n_subjects")

    @property
    def noise(self) -> int:
        return self.n_subjects + self.n_relations if self.n_noise < 0 else self.n_noise

    @property
    def vocab_size(self) -> int:
        """Subjects + relations + noise + EOS."""
        return self.n_subjects + self.n_relations + self.noise + 1


class RecallBatch(NamedTuple):
    """A batch of Task A prompts; unpacks as (tokens, answer, subject, relation)."""

    tokens: torch.Tensor  # [B, T] input ids
    answer: torch.Tensor  # [B] output ids a*(s, r)
    subject: torch.Tensor  # [B]
    relation: torch.Tensor  # [B]


def sample_factual_recall(
    kb: KnowledgeBase, batch: int, gen: torch.Generator, seq_len: int = 32, n_noise: int = 0,
    eos: bool = True, subject_zipf: float = 0.0, relation_zipf: float = 0.0,
    device: torch.device | str = "cpu",
) -> RecallBatch:
    """Draw `batch` prompts: a `RecallBatch` (tokens [B, T], answer, subject, relation [B]).

    All randomness comes from `gen` (a CPU generator); tensors are moved to `device` at the end.
    """
    S, R, T = kb.n_subjects, kb.n_relations, seq_len
    if subject_zipf > 0:
        s = torch.multinomial(zipf_weights(S, subject_zipf), batch, True, generator=gen)
    else:
        s = torch.randint(0, S, (batch,), generator=gen)
    if relation_zipf > 0:
        r = torch.multinomial(zipf_weights(R, relation_zipf), batch, True, generator=gen)
    else:
        r = torch.randint(0, R, (batch,), generator=gen)
    if n_noise > 0:
        tokens = S + R + torch.randint(0, n_noise, (batch, T), generator=gen)
    else:
        tokens = torch.full((batch, T), S + R + n_noise, dtype=torch.long)  # EOS as filler
    rows = torch.arange(batch)
    slots = T - 1  # positions 0..T-2 take subject and relation (EOS case)
    if eos:
        pos_s = torch.randint(0, slots, (batch,), generator=gen)
        pos_r = torch.randint(0, slots - 1, (batch,), generator=gen)
        pos_r = pos_r + (pos_r >= pos_s).long()  # uniform over the slots other than pos_s
        tokens[rows, pos_r] = S + r
        tokens[rows, T - 1] = S + R + n_noise
    else:
        pos_s = torch.randint(0, slots, (batch,), generator=gen)
        tokens[rows, T - 1] = S + r
    tokens[rows, pos_s] = s
    answer = kb.answers[s, r]
    return RecallBatch(tokens.to(device), answer.to(device), s.to(device), r.to(device))


def sample_task(kb: KnowledgeBase, task: RecallTaskConfig, batch: int, gen: torch.Generator,
                device: torch.device | str = "cpu") -> RecallBatch:
    """`sample_factual_recall` with the prompt layout that `task` describes."""
    return sample_factual_recall(kb, batch, gen, seq_len=task.seq_len, n_noise=task.noise,
                                 eos=task.eos, subject_zipf=task.subject_zipf,
                                 relation_zipf=task.relation_zipf, device=device)
