"""Synthetic pre-training corpus and Q&A fine-tuning sets of arXiv 2508.00901 (a reconstruction;
docs/extraction.md says what the paper states and what is ours). Facts a*(s, r) live in disjoint answer
blocks (a `KnowledgeBase`). Every relation r owns `n_templates` template tokens T_{r,j}; the
relation-template universe is R = {(r, j)}, |R| = n_relations * n_templates. Each fact gets a
fixed set J(s, r) of K templates and appears in pre-training once with each of them.

Token ids of the input vocabulary, in order:

    subjects [0, S) | templates S + r*tau + j | noise | BOS | ANS | QFMT | AFMT | QREL_r

A pre-training sequence (s, r, j) is uniform noise over positions 0..L-2 with s and T_{r,j} at
two distinct random positions, and ANS at L-1 (target a*(s, r)). A Q&A sequence is
(QFMT, s, T_{r,j}, AFMT) (or QREL_r in place of the template), target a*(s, r) at AFMT. QFMT and
AFMT never occur in pre-training. Subjects split into three disjoint sets: P_train
(fine-tuned), P_val (held out, read by lr selection and early stopping) and P_test (held out,
read only by the verdicts); fine-tuning draws `n_finetune` pairs from P_train x C, C being the
covered subset of R.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from factlab.config import require
from factlab.knowledge import KnowledgeBase, make_knowledge_base


@dataclasses.dataclass
class CorpusConfig:
    """Sizes of the fact table, the template universe, multiplicity, split and coverage."""

    n_subjects: int = 2000  # S
    n_relations: int = 8  # n_rel
    n_templates: int = 8  # tau, templates per relation; |R| = n_rel * tau
    n_answers: int = 16  # D, answers per relation (disjoint blocks)
    multiplicity: int = 4  # K, templates per fact in pre-training (K <= tau)
    multiplicity_mode: Literal["templates", "repeats"] = "templates"  # repeats: K copies of one
    seq_len: int = 16  # L of a pre-training sequence
    n_noise: int = 64  # noise tokens; 0 gives the short form (s, T, ANS)
    train_frac: float = 0.5  # p, fraction of subjects in P_train
    val_frac: float = 0.25  # fraction in P_val (lr grid, early stop); the rest is P_test
    coverage: float = 1.0  # c = |C| / |R|
    coverage_mode: Literal["random", "relations"] = "random"  # random subset of R, or whole rels
    n_finetune: int = 10000  # N_f, fine-tuning sequences drawn from P_train x C
    question: Literal["template", "relation"] = "template"  # QREL_r variant: relation coverage
    kb_seed: int = 64

    def check(self) -> None:
        for key in ("n_subjects", "n_relations", "n_templates", "n_answers", "multiplicity"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.multiplicity <= self.n_templates, "multiplicity",
                f"K must be <= n_templates={self.n_templates}, got {self.multiplicity}")
        require(self.n_noise >= 0, "n_noise", f"must be >= 0, got {self.n_noise}")
        min_len = 3
        require(self.seq_len >= min_len, "seq_len", f"must be >= {min_len}, got {self.seq_len}")
        require(0 < self.train_frac < 1, "train_frac", f"must be in (0, 1), got {self.train_frac}")
        require(0 < self.val_frac < 1 - self.train_frac, "val_frac",
                f"must be in (0, 1 - train_frac) so that P_test is not empty, got {self.val_frac}")
        require(self.n_subjects >= 3, "n_subjects", "needs >= 3 for train/val/test subjects")
        require(0 <= self.coverage <= 1, "coverage", f"must be in [0, 1], got {self.coverage}")
        require(self.n_finetune >= 0, "n_finetune", f"must be >= 0, got {self.n_finetune}")

    @property
    def universe(self) -> int:
        """|R| = n_relations * n_templates."""
        return self.n_relations * self.n_templates


@dataclasses.dataclass
class Vocab:
    """Token-id offsets of one corpus."""

    S: int
    n_rel: int
    tau: int
    n_noise: int

    @property
    def template0(self) -> int:
        """First template token id (T_{0,0})."""
        return self.S

    @property
    def noise0(self) -> int:
        """First noise token id."""
        return self.S + self.n_rel * self.tau

    @property
    def BOS(self) -> int:
        """The filler of the short form."""
        return self.noise0 + self.n_noise

    @property
    def ANS(self) -> int:
        """The answer-slot marker of pre-training."""
        return self.BOS + 1

    @property
    def QFMT(self) -> int:
        """The question-format token (never in pre-training)."""
        return self.BOS + 2

    @property
    def AFMT(self) -> int:
        """The answer-format token (never in pre-training)."""
        return self.BOS + 3

    @property
    def qrel0(self) -> int:
        """First per-relation question token QREL_0."""
        return self.BOS + 4

    @property
    def size(self) -> int:
        """Vocabulary size."""
        return self.qrel0 + self.n_rel

    def template(self, r: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Token id of T_{r, j}."""
        return self.template0 + r * self.tau + j

    def is_subject(self, tokens: torch.Tensor) -> torch.Tensor:
        """Subject tokens."""
        return tokens < self.S

    def is_template(self, tokens: torch.Tensor) -> torch.Tensor:
        """Template tokens T_{r,j}, and the QREL_r tokens that stand in for them."""
        return ((tokens >= self.template0) & (tokens < self.noise0)) | (tokens >= self.qrel0)


@dataclasses.dataclass
class Corpus:
    """One drawn corpus: facts, template sets J, the subject split and the coverage set C."""

    cfg: CorpusConfig
    kb: KnowledgeBase  # answers[s, r] in [0, n_rel * D)
    J: torch.Tensor  # [S, n_rel, K] template index j of each pre-training copy of a fact
    train_subjects: torch.Tensor  # P_train, sorted
    val_subjects: torch.Tensor  # P_val, sorted: what lr grids and early stops read
    test_subjects: torch.Tensor  # P_test, sorted: what the verdicts read
    covered: torch.Tensor  # [n_rel, tau] bool, the set C
    finetune: torch.Tensor  # [N_f, 3] rows (s, r, j), s in P_train, (r, j) in C

    @property
    def vocab(self) -> Vocab:
        """Token-id offsets of this corpus."""
        c = self.cfg
        return Vocab(c.n_subjects, c.n_relations, c.n_templates, c.n_noise)

    @property
    def n_outputs(self) -> int:
        """Answer vocabulary size n_rel * D."""
        return self.kb.n_outputs

    def pretrain_rows(self, subjects: torch.Tensor | None = None) -> torch.Tensor:
        """[n, 3] rows (s, r, j): every fact of `subjects` (default all) once per j in J(s, r)."""
        S, R, K = self.J.shape
        s = torch.arange(S)[:, None, None].expand(S, R, K)
        r = torch.arange(R)[None, :, None].expand(S, R, K)
        rows = torch.stack([s, r, self.J], -1).reshape(-1, 3)
        if subjects is not None:
            keep = torch.isin(rows[:, 0], subjects)
            rows = rows[keep]
        return rows

    def seen_mask(self, s: torch.Tensor, r: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Whether T_{r,j} is one of the templates fact (s, r) was pre-trained with."""
        J = self.J.to(s.device)[s, r]  # [n, K]
        return (j[:, None] == J).any(-1)

    def test_rows(self, split: Literal["test", "val"] = "test") -> torch.Tensor:
        """[n, 3] rows (s, r, j): P_test (or P_val) x every relation x every template."""
        c = self.cfg
        s = self.test_subjects if split == "test" else self.val_subjects
        grid = torch.cartesian_prod(s, torch.arange(c.n_relations), torch.arange(c.n_templates))
        return grid.reshape(-1, 3)

    def answers(self, rows: torch.Tensor) -> torch.Tensor:
        """a*(s, r) for rows (s, r, j)."""
        return self.kb.answers.to(rows.device)[rows[:, 0], rows[:, 1]]

    def pretrain_tokens(self, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Pre-training sequences [n, L] for rows (s, r, j); noise and positions from `gen`."""
        c, v = self.cfg, self.vocab
        n, L = rows.shape[0], c.seq_len
        s, r, j = rows[:, 0].cpu(), rows[:, 1].cpu(), rows[:, 2].cpu()
        if c.n_noise > 0:
            tokens = v.noise0 + torch.randint(0, c.n_noise, (n, L), generator=gen)
        else:
            tokens = torch.full((n, L), v.BOS, dtype=torch.long)  # short form, BOS as filler
        idx = torch.arange(n)
        slots = L - 1
        pos_s = torch.randint(0, slots, (n,), generator=gen)
        pos_t = torch.randint(0, slots - 1, (n,), generator=gen)
        pos_t = pos_t + (pos_t >= pos_s).long()  # uniform over the slots other than pos_s
        tokens[idx, pos_s] = s
        tokens[idx, pos_t] = v.template(r, j)
        tokens[:, L - 1] = v.ANS
        return tokens.to(rows.device)

    def qa_tokens(self, rows: torch.Tensor) -> torch.Tensor:
        """Q&A sequences [n, 4]: (QFMT, s, T_{r,j} or QREL_r, AFMT)."""
        v = self.vocab
        s, r, j = rows[:, 0], rows[:, 1], rows[:, 2]
        q = v.qrel0 + r if self.cfg.question == "relation" else v.template(r, j)
        return torch.stack([torch.full_like(s, v.QFMT), s, q, torch.full_like(s, v.AFMT)], -1)


def _coverage_mask(cfg: CorpusConfig, gen: torch.Generator) -> torch.Tensor:
    """C as a [n_rel, tau] mask: round(c |R|) random elements, or round(c n_rel) relations."""
    R, tau = cfg.n_relations, cfg.n_templates
    mask = torch.zeros(R * tau, dtype=torch.bool)
    if cfg.coverage_mode == "relations":
        n_rel = round(cfg.coverage * R)
        rels = torch.randperm(R, generator=gen)[:n_rel]
        mask = mask.view(R, tau)
        mask[rels] = True
        return mask
    n = round(cfg.coverage * R * tau)
    if cfg.coverage > 0:
        n = max(n, 1)  # any positive coverage touches at least one direction
    mask[torch.randperm(R * tau, generator=gen)[:n]] = True
    return mask.view(R, tau)


def _finetune_rows(train_subjects: torch.Tensor, covered: torch.Tensor, n: int,
                   gen: torch.Generator) -> torch.Tensor:
    """N_f rows from P_train x C, without replacement while possible (then a fresh pass)."""
    pairs = covered.nonzero()  # [|C|, 2] (r, j)
    total = len(train_subjects) * len(pairs)
    if n == 0 or total == 0:
        return torch.zeros(0, 3, dtype=torch.long)
    passes = math.ceil(n / total)
    flat = torch.cat([torch.randperm(total, generator=gen) for _ in range(passes)])[:n]
    s = train_subjects[flat // len(pairs)]
    rj = pairs[flat % len(pairs)]
    return torch.cat([s[:, None], rj], 1)


def build_corpus(cfg: CorpusConfig, seed: int) -> Corpus:
    """Draw the facts (from `cfg.kb_seed`), the template sets, split and coverage (from `seed`)."""
    cfg.check()
    S, R, tau, K = cfg.n_subjects, cfg.n_relations, cfg.n_templates, cfg.multiplicity
    kb = make_knowledge_base(S, R, cfg.n_answers, seed=cfg.kb_seed)
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.rand(S, R, tau, generator=gen).argsort(-1)  # a random permutation per fact
    if cfg.multiplicity_mode == "repeats":
        J = order[..., :1].expand(S, R, K).contiguous()
    else:
        J = order[..., :K].contiguous()
    perm = torch.randperm(S, generator=gen)
    n_train = min(S - 2, max(1, round(cfg.train_frac * S)))
    n_val = min(S - n_train - 1, max(1, round(cfg.val_frac * S)))
    train_subjects = perm[:n_train].sort().values
    val_subjects = perm[n_train:n_train + n_val].sort().values
    test_subjects = perm[n_train + n_val:].sort().values
    covered = _coverage_mask(cfg, gen)
    finetune = _finetune_rows(train_subjects, covered, cfg.n_finetune, gen)
    return Corpus(cfg, kb, J, train_subjects, val_subjects, test_subjects, covered, finetune)


def effective_finetune_size(corpus: Corpus) -> int:
    """Ñ_f: the number of distinct fine-tuning sequences (repeats add no new direction)."""
    if len(corpus.finetune) == 0:
        return 0
    return int(torch.unique(corpus.finetune, dim=0).shape[0])
