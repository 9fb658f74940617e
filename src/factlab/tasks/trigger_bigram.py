"""Trigger-bigram data of Birth (arXiv 2306.00802) and the designed hijack prompts P1-P5.

Sequences (Birth's generator): z_0 ~ π_u; z_{t+1} = o_k if z_t = q_k (a trigger),
else z_{t+1} ~ π_b(·|z_t). Triggers are the K most frequent tokens (fixed) or K distinct draws
from π_u per sequence (random); outputs are uniform or bigram draws, one per trigger and
sequence. `outs[t]` counts the occurrences of the trigger z_t in z_0..z_t (0 off triggers).

Every step is one batched op over the B sequences; only the chain's time index is a Python
loop (the chain is sequential in t). Randomness comes from an explicit torch.Generator.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Literal

import torch

from factlab.config import require
from factlab.tasks.bigram_stats import BigramStats


@dataclasses.dataclass
class TriggerTaskConfig:
    """Knobs of the trigger-bigram sampler."""

    seq_len: int = 64  # T (training length)
    n_triggers: int = 5  # K; 0 gives the pure bigram model
    fixed_triggers: bool = False  # the K most frequent tokens, else K per sequence from π_u
    trigger_offset: int = 0  # fixed triggers: skip this many of the most frequent tokens
    outputs: Literal["uniform", "bigram"] = "uniform"
    no_repeat: bool = False  # forbid o_k = q_k
    output_pool: Literal["all", "train", "test"] = "all"  # ids [0, 0.75N) or [0.75N, N)
    stats: str = "shakespeare"  # the shipped counts, or a path to a .json of counts / a text file
    test_batch: int = 512  # fixed test batch, drawn with seed 0

    def check(self) -> None:
        require(self.seq_len >= 2, "seq_len", f"must be >= 2, got {self.seq_len}")
        require(self.n_triggers >= 0, "n_triggers", f"must be >= 0, got {self.n_triggers}")
        require(self.trigger_offset >= 0, "trigger_offset", "must be >= 0")
        require(self.test_batch >= 1, "test_batch", "must be >= 1")
        require(self.stats == "shakespeare" or Path(self.stats).is_file(), "stats",
                f"no such file {self.stats!r} (use 'shakespeare', a counts .json or a text file)")


def pool_mask(n: int, pool: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [N] mask of allowed output ids: all, [0, ⌊0.75N⌋) or [⌊0.75N⌋, N)."""
    ids = torch.arange(n, device=device)
    cut = (3 * n) // 4
    if pool == "train":
        return ids < cut
    if pool == "test":
        return ids >= cut
    return torch.ones(n, dtype=torch.bool, device=device)


def draw_triggers(stats: BigramStats, B: int, K: int, fixed: bool, offset: int,
                  gen: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """Trigger ids [B, K]: the top-K tokens (shifted by `offset`) or K distinct draws from π_u."""
    if fixed:
        return stats.top_tokens(K, offset).to(device).expand(B, K).clone()
    probs = stats.unigram.float().to(device).expand(B, stats.n)
    return torch.multinomial(probs, K, replacement=False, generator=gen)


def draw_outputs(stats: BigramStats, triggers: torch.Tensor, outputs: str, no_repeat: bool,
                 pool: str, gen: torch.Generator) -> torch.Tensor:
    """One output per trigger and sequence, [B, K]: uniform or π_b(·|q_k) within the pool."""
    B, K = triggers.shape
    n, device = stats.n, triggers.device
    if outputs == "bigram":
        w = stats.bigram.float().to(device)[triggers]  # [B, K, N]
    else:
        w = torch.ones(B, K, n, device=device)
    w = w * pool_mask(n, pool, device)
    if no_repeat:
        w = w.scatter(2, triggers[..., None], 0.0)
    empty = w.sum(-1, keepdim=True) <= 0  # a bigram row with no mass in the pool
    w = torch.where(empty, pool_mask(n, pool, device).float().expand_as(w), w)
    return torch.multinomial(w.view(B * K, n), 1, generator=gen).view(B, K)


@functools.lru_cache(maxsize=8)
def alias_tables(stats: BigramStats) -> tuple[torch.Tensor, torch.Tensor]:
    """Walker/Vose alias tables of every row of π_b, flattened: (accept, alias), each [N*N].

    Drawing column c uniformly and keeping it with probability accept[i*N + c] (else taking
    alias[i*N + c]) samples π_b(.|i) exactly. Cached per `stats` object.
    """
    n = stats.n
    accept: list[float] = []
    alias: list[int] = []
    for row in (stats.bigram * n).tolist():
        acc, ali = [1.0] * n, list(range(n))
        small = [j for j, p in enumerate(row) if p < 1.0]
        large = [j for j, p in enumerate(row) if p >= 1.0]
        while small and large:
            s_, l_ = small.pop(), large.pop()
            acc[s_], ali[s_] = row[s_], l_
            row[l_] -= 1.0 - row[s_]
            (small if row[l_] < 1.0 else large).append(l_)
        accept += acc
        alias += ali
    return torch.tensor(accept, dtype=torch.float64).float(), torch.tensor(alias)


def sample_batch(stats: BigramStats, B: int, T: int, K: int = 0, fixed_triggers: bool = False,
                 trigger_offset: int = 0, outputs: str = "uniform", no_repeat: bool = False,
                 output_pool: str = "all", gen: torch.Generator | None = None,
                 device: torch.device | str = "cpu", return_triggers: bool = False):
    """Sample B trigger-bigram sequences of T+1 tokens; return x [B,T], y [B,T], outs [B,T].

    With `return_triggers` also returns (triggers [B,K], outputs [B,K]). All randomness is
    drawn up front; a bigram step is a Walker alias draw (two flat gathers and a where) and the
    trigger rule a per-sequence lookup table, so a step is a few batched ops over B.
    """
    gen = gen if gen is not None else torch.Generator(device=device).manual_seed(0)
    n = stats.n
    accept, alias = (t.to(device) for t in alias_tables(stats))
    z0 = torch.multinomial(stats.unigram.float().to(device).expand(B, n), 1, generator=gen)[:, 0]
    col = torch.randint(n, (T, B, 1), generator=gen, device=device)  # alias column per step
    coin = torch.rand(T, B, 1, generator=gen, device=device)
    if K > 0:
        trig = draw_triggers(stats, B, K, fixed_triggers, trigger_offset, gen, device)
        outs_k = draw_outputs(stats, trig, outputs, no_repeat, output_pool, gen)
    else:
        trig = torch.empty(B, 0, dtype=torch.long, device=device)
        outs_k = trig.clone()
    # fwd[b, i] = the output of token i if it is a trigger of sequence b, else -1
    fwd = torch.full((B, n), -1, dtype=torch.long, device=device)
    fwd.scatter_(1, trig, outs_k)
    cur = z0[:, None]  # [B, 1]
    steps = [cur]
    for t in range(T):  # a handful of batched ops over B per step
        cell = cur * n + col[t]  # Walker alias draw from π_b(.|cur)
        bigram_next = torch.where(coin[t] < accept[cell], col[t], alias[cell])
        forced = fwd.gather(1, cur)
        cur = torch.where(forced >= 0, forced, bigram_next)
        steps.append(cur)
    z = torch.cat(steps, 1)  # [B, T+1]
    # occurrence counter, vectorised after the chain: the running count of z_t among z_0..z_t
    match = z[:, :T, None] == trig[:, None, :]  # [B, T, K]
    occ = (match.long().cumsum(1) * match).sum(-1)
    x, y = z[:, :T], z[:, 1:]
    if return_triggers:
        return x, y, occ, trig, outs_k
    return x, y, occ


def sample_from_config(stats: BigramStats, cfg: TriggerTaskConfig, B: int, gen: torch.Generator,
                       device: torch.device | str = "cpu", T: int | None = None,
                       return_triggers: bool = False):
    """`sample_batch` with the knobs of a `TriggerTaskConfig` (T defaults to cfg.seq_len)."""
    return sample_batch(stats, B, cfg.seq_len if T is None else T, cfg.n_triggers,
                        cfg.fixed_triggers, cfg.trigger_offset, cfg.outputs, cfg.no_repeat,
                        cfg.output_pool, gen, device, return_triggers)


# ---------------------------------------------------------------------------------------------
# Designed prompts P1-P5 (our reconstruction for arXiv 2412.11459): filler, exact evidence, query.


@dataclasses.dataclass
class PromptBatch:
    """Prompts [n, L] ending in the query q, with their candidates.

    `o` is the in-context answer (o₁ in P3), `o2` the conflicting one (P3; -1 elsewhere),
    `jstar` the global favourite argmax_j π_b(j|q). `n_o`, `n_o2` count the evidence pairs.
    """

    tokens: torch.Tensor  # [n, L]
    q: torch.Tensor  # [n]
    o: torch.Tensor  # [n]
    o2: torch.Tensor  # [n]
    jstar: torch.Tensor  # [n]
    n_o: int
    n_o2: int


def peaked_queries(stats: BigramStats, min_peak: float = 0.3,
                   allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Tokens q whose bigram row is peaked (max_j π_b(j|q) >= min_peak), optionally within
    `allowed` (the fixed triggers of a model trained with them)."""
    ok = stats.bigram.max(1).values >= min_peak
    if allowed is not None:
        keep = torch.zeros_like(ok)
        keep[allowed.cpu()] = True
        ok = ok & keep
    return torch.nonzero(ok).flatten()


def _draw_excluding(n: int, excluded: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """One uniform token per row, [m], avoiding every id in the [m] tensors of `excluded`."""
    m = excluded[0].shape[0]
    w = torch.ones(m, n)
    for e in excluded:
        w.scatter_(1, e[:, None], 0.0)
    return torch.multinomial(w, 1, generator=gen)[:, 0]


def filler(stats: BigramStats, excluded: torch.Tensor, L: int,
           gen: torch.Generator) -> torch.Tensor:
    """Bigram chains [m, L] from π_b renormalised without the ids marked in `excluded` [m, N].

    A row left with no mass falls back to the unigram restricted to the allowed ids.
    """
    m, n = excluded.shape
    keep = (~excluded).double()
    pb = stats.bigram[None] * keep[:, None, :]  # [m, N, N]; rows i, columns j allowed
    uni = stats.unigram[None] * keep  # [m, N]
    empty = pb.sum(-1, keepdim=True) <= 0
    pb = torch.where(empty, uni[:, None, :].expand_as(pb), pb)
    pb = pb / pb.sum(-1, keepdim=True)
    cdf = pb.cumsum(-1).float()
    cdf[..., -1] = 1.0 + 1e-6
    u = torch.rand(L, m, 1, generator=gen)
    out = torch.empty(m, L, dtype=torch.long)
    out[:, 0] = torch.multinomial(uni.float(), 1, generator=gen)[:, 0]
    rows = torch.arange(m)
    for t in range(1, L):
        c = cdf[rows, out[:, t - 1]]  # [m, N]
        out[:, t] = torch.searchsorted(c, u[t], right=True)[:, 0].clamp_max(n - 1)
    return out


def _random_slots(m: int, n_slots: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct slot indices in [0, n_slots) per row, [m, k], sorted."""
    return torch.rand(m, n_slots, generator=gen).argsort(1)[:, :k].sort(1).values


def make_prompts(stats: BigramStats, m: int, L: int, n_o: int, n_o2: int = 0,
                 region: tuple[int, int] | None = None, distance: int | None = None,
                 o_is_jstar: bool = False, queries: torch.Tensor | None = None,
                 query_weights: torch.Tensor | None = None,
                 gen: torch.Generator | None = None) -> PromptBatch:
    """m prompts of length L: filler, n_o pairs (q, o) and n_o2 pairs (q, o2), then q.

    Pairs occupy distinct aligned 2-slots inside `region` = [start, end) (default: the first
    half), or with `distance` a single pair (q, o) whose q sits `distance` positions before the
    query. `o_is_jstar` sets o = j* (P3's "o₁ = j*" arm); otherwise o ∉ {q, j*}. q is drawn
    from `queries` uniformly, or in proportion to `query_weights`.
    """
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    n = stats.n
    queries = peaked_queries(stats) if queries is None else queries
    if query_weights is None:
        q = queries[torch.randint(len(queries), (m,), generator=gen)]
    else:
        q = queries[torch.multinomial(query_weights.expand(m, -1), 1, True, generator=gen)[:, 0]]
    jstar = stats.bigram.argmax(1)[q]
    o = jstar.clone() if o_is_jstar else _draw_excluding(n, [q, jstar], gen)
    o2 = _draw_excluding(n, [q, jstar, o], gen) if n_o2 > 0 else torch.full_like(q, -1)
    excluded = torch.zeros(m, n, dtype=torch.bool)
    for ids in (q, jstar, o) + ((o2,) if n_o2 > 0 else ()):
        excluded.scatter_(1, ids[:, None], True)
    tokens = filler(stats, excluded, L, gen)
    tokens[:, -1] = q
    rows = torch.arange(m)
    if distance is not None:
        pos = torch.full((m, 1), L - 1 - distance)
        which = torch.zeros(m, 1, dtype=torch.bool)
    else:
        start, end = region if region is not None else (0, L // 2)
        n_slots = (min(end, L - 2) - start) // 2
        total = n_o + n_o2
        if total > n_slots:
            raise ValueError(f"{total} evidence pairs do not fit in {n_slots} slots")
        pos = start + 2 * _random_slots(m, n_slots, total, gen)  # [m, total]
        # which pairs carry o2: a random subset of size n_o2 per prompt
        which = torch.rand(m, total, generator=gen).argsort(1) < n_o2
    for c in range(pos.shape[1]):
        p = pos[:, c]
        tokens[rows, p] = q
        tokens[rows, p + 1] = torch.where(which[:, c], o2, o)
    return PromptBatch(tokens, q, o, o2, jstar, n_o, n_o2)
