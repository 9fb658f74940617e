"""Task B of arXiv 2605.27774: in-context factual recall (our reconstruction of the prompt).

A prompt lists k (subject, answer) pairs of one *hidden* relation r, then a query subject:

    s_1, a*(s_1, r), ..., s_k, a*(s_k, r), s_q  [, EOS]          label y = a*(s_q, r)

Unified input vocabulary: subjects [0, S), relations [S, S+R), answers as *input*
tokens [S+R, S+R+RD) (answer output id a is input token S+R+a), then `n_noise` noise tokens and
EOS as the last id. Labels are output ids in [0, RD). Subjects are distinct and s_q is kept out
of the context by default, which rules out copying.

Answer sets are disjoint blocks by default (relation r owns [rD, (r+1)D)); the `shared` ablation
draws every a*(s, r) from one pool of all RD answers, so an answer no longer reveals r.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from factlab.config import require
from factlab.knowledge import KnowledgeBase, make_knowledge_base


@dataclasses.dataclass
class ICTaskConfig:
    """Knowledge base and prompt layout of the IC-recall task."""

    n_subjects: int = 1024  # S
    n_relations: int = 8  # R
    n_answers: int = 8  # D, answers per relation
    k: int = 8  # context pairs
    answer_sets: Literal["disjoint", "shared"] = "disjoint"
    eos: bool = False  # append EOS so the query slot is a fixed marker
    query_in_context: bool = False  # True: s_q is one of the context subjects (copying allowed)
    kb_seed: int = 64

    def check(self) -> None:
        for key in ("n_subjects", "n_relations", "n_answers", "k"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        need = self.k if self.query_in_context else self.k + 1
        require(self.n_subjects >= need, "n_subjects",
                f"needs at least {need} subjects for k={self.k} distinct context subjects "
                f"(query {'inside' if self.query_in_context else 'outside'} the context), "
                f"got {self.n_subjects}")

    @property
    def vocab(self) -> ICVocab:
        return ICVocab(self.n_subjects, self.n_relations, self.n_answers)

    @property
    def seq_len(self) -> int:
        return 2 * self.k + 1 + int(self.eos)


@dataclasses.dataclass(frozen=True)
class ICVocab:
    """Token ids of the unified input vocabulary (subjects, relations, answers, noise, EOS)."""

    S: int
    R: int
    D: int
    n_noise: int = 0

    def relation(self, r: torch.Tensor | int) -> torch.Tensor | int:
        """Input id of relation token r."""
        return self.S + r

    def answer(self, a: torch.Tensor | int) -> torch.Tensor | int:
        """Input id of answer output id a."""
        return self.S + self.R + a

    @property
    def noise_start(self) -> int:
        return self.S + self.R + self.R * self.D

    @property
    def eos(self) -> int:
        return self.noise_start + self.n_noise

    @property
    def size(self) -> int:
        """V = S + R + RD + n_noise + 1."""
        return self.eos + 1

    def from_recall(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map Task A token ids (subjects, relations, noise, EOS; `tasks.recall`) to unified ids."""
        return torch.where(tokens >= self.S + self.R, tokens + self.R * self.D, tokens)


def make_ic_knowledge_base(cfg: ICTaskConfig) -> KnowledgeBase:
    """The fact table: disjoint blocks (factlab.knowledge) or one shared pool of RD answers."""
    kb = make_knowledge_base(cfg.n_subjects, cfg.n_relations, cfg.n_answers, seed=cfg.kb_seed)
    if cfg.answer_sets == "shared":
        gen = torch.Generator().manual_seed(cfg.kb_seed)
        table = torch.randint(0, kb.n_outputs, (cfg.n_subjects, cfg.n_relations), generator=gen)
        kb = KnowledgeBase(table.long(), cfg.n_answers)
    return kb


def distinct_subjects(exclude: torch.Tensor, n_subjects: int, count: int,
                      gen: torch.Generator) -> torch.Tensor:
    """[B, count] subjects, distinct within a row and never equal to `exclude[b]`.

    Uniform without replacement via the top-`count` of i.i.d. uniform keys, in row chunks so
    the [chunk, S] key matrix stays small (S up to 2^13 and B up to 2^16 fit in ~64 MiB).
    """
    B = exclude.shape[0]
    pool = n_subjects - 1
    chunk = max(1, (1 << 23) // max(pool, 1))
    out = []
    for start in range(0, B, chunk):
        n = min(chunk, B - start)
        keys = torch.rand(n, pool, generator=gen)
        pick = keys.topk(count, dim=1).indices  # [n, count], distinct values in [0, pool)
        # skip the excluded subject: values >= s_q shift up by one
        out.append(pick + (pick >= exclude[start:start + n, None]).long())
    return torch.cat(out) if out else torch.zeros(0, count, dtype=torch.long)


def sample_ic_recall(
    kb: KnowledgeBase, cfg: ICTaskConfig, batch: int, gen: torch.Generator,
    query_subject: torch.Tensor | None = None, relation: torch.Tensor | None = None,
    pool: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Draw `batch` IC-recall prompts (all randomness from the CPU generator `gen`).

    `query_subject` and `relation` ([B] each) fix the queried triplets, e.g. to enumerate all SR
    of them for evaluation; otherwise both are uniform. `pool` (sorted subject ids) restricts
    the query and every context subject to it (e.g. the fine-tuning subjects, so that held-out
    subjects appear in no training prompt). Returns CPU tensors:
    tokens [B, 2k+1(+1)], answer [B] (output ids), relation [B], subjects [B, k+1] (context
    subjects then s_q), context_answers [B, k] (output ids).
    """
    S, R, k, voc = kb.n_subjects, kb.n_relations, cfg.k, cfg.vocab
    if relation is None:
        relation = torch.randint(0, R, (batch,), generator=gen)
    if pool is not None:
        # draw in the pool's index space, then map back to subject ids
        P = len(pool)
        q_idx = (torch.randint(0, P, (relation.shape[0],), generator=gen) if query_subject is None
                 else torch.searchsorted(pool, query_subject))
        query_subject = pool[q_idx]
    elif query_subject is None:
        query_subject = torch.randint(0, S, (batch,), generator=gen)
    B = relation.shape[0]

    def others(count: int) -> torch.Tensor:
        if pool is None:
            return distinct_subjects(query_subject, S, count, gen)
        return pool[distinct_subjects(q_idx, P, count, gen)]

    if cfg.query_in_context:
        ctx = others(k - 1) if k > 1 else torch.zeros(B, 0, dtype=torch.long)
        ctx = torch.cat([ctx, query_subject[:, None]], 1)
        # put s_q at a uniform context slot: a random permutation of each row
        order = torch.rand(B, k, generator=gen).argsort(dim=1)
        ctx = ctx.gather(1, order)
    else:
        ctx = others(k)
    ctx_ans = kb.answers[ctx, relation[:, None]]  # [B, k]
    pairs = torch.stack([ctx, voc.answer(ctx_ans)], dim=2).reshape(B, 2 * k)
    parts = [pairs, query_subject[:, None]]
    if cfg.eos:
        parts.append(torch.full((B, 1), voc.eos, dtype=torch.long))
    tokens = torch.cat(parts, 1)
    return {"tokens": tokens, "answer": kb.answers[query_subject, relation],
            "relation": relation, "subjects": torch.cat([ctx, query_subject[:, None]], 1),
            "context_answers": ctx_ans}


def all_triplets(kb: KnowledgeBase, limit: int, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(subject, relation) of every triplet when S*R <= limit, else `limit` uniform ones."""
    S, R = kb.n_subjects, kb.n_relations
    if limit >= S * R:
        idx = torch.arange(S * R)
    else:
        idx = torch.randint(0, S * R, (limit,), generator=gen)
    return idx // R, idx % R


def seen_triplets(kb: KnowledgeBase, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[S, R] bool: triplets that appear in `batch` as the query or as a context pair."""
    seen = torch.zeros(kb.n_subjects, kb.n_relations, dtype=torch.bool)
    subj = batch["subjects"]
    rel = batch["relation"][:, None].expand_as(subj)
    seen[subj.reshape(-1), rel.reshape(-1)] = True
    return seen


def split_subjects(n_subjects: int, heldout_frac: float, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(fine-tuning subjects, held-out subjects), both sorted; round(frac * S) are held out."""
    perm = torch.randperm(n_subjects, generator=gen)
    n_out = int(round(heldout_frac * n_subjects))
    return perm[n_out:].sort().values, perm[:n_out].sort().values


def enumerate_triplets(subjects: torch.Tensor, n_relations: int, repeats: int = 1
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(subject, relation) of every triplet of `subjects`, each listed `repeats` times (so each
    can be asked in several random contexts)."""
    s = subjects.repeat_interleave(n_relations).repeat(repeats)
    r = torch.arange(n_relations).repeat(len(subjects)).repeat(repeats)
    return s, r
