"""The extraction family's statistics: the collapse fit of the error bound and the
permutation null of the relation-direction probe (arXiv 2508.00901).

The collapse fit is least squares of log(1 - acc) on the bound variable x. The
relation-direction probe is the gap between the mean within-relation and the mean
across-relation cosine of the template images W_OV φ(T_{r,j}). Its null relabels the
templates at random (keeping n_rel groups of tau): what the gap is when the grouping carries
no information, computed on the same vectors the probe reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def relation_gap(unit: torch.Tensor, rel: torch.Tensor) -> float:
    """Mean within-group minus mean across-group cosine of unit vectors [n, d], labels [n]."""
    cos = unit @ unit.T
    same = rel[:, None] == rel[None, :]
    off = ~torch.eye(len(rel), dtype=torch.bool)
    within, across = cos[same & off], cos[~same]
    if not within.numel() or not across.numel():
        return float("nan")
    return float(within.mean() - across.mean())


def _grouped(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows [n_rel * tau, d] (float64) of `vectors` [n_rel, tau, d] and their labels."""
    n_rel, tau, _ = vectors.shape
    unit = torch.nn.functional.normalize(vectors.reshape(n_rel * tau, -1).double(), dim=-1)
    return unit, torch.arange(n_rel).repeat_interleave(tau)


def _group_gaps(unit: torch.Tensor, rel: torch.Tensor, n_rel: int) -> torch.Tensor:
    """Per group g [n_rel]: mean cosine among g's vectors minus mean cosine of g's vectors with
    every other vector (unit vectors [n, d], labels [n] in [0, n_rel))."""
    cos = unit @ unit.T
    member = torch.nn.functional.one_hot(rel, n_rel).to(cos.dtype)  # [n, n_rel]
    size = member.sum(0)
    within = (member.T @ cos @ member).diagonal() - size  # drop each vector's own cosine 1
    total = member.T @ cos.sum(1)  # g's vectors against all, self included
    across = total - within - size
    return within / (size * (size - 1)) - across / (size * (len(rel) - size))


def relation_gaps(vectors: torch.Tensor) -> torch.Tensor:
    """Each relation's own gap [n_rel] of `vectors` [n_rel, tau, d]: its templates among
    themselves minus against every other template."""
    unit, rel = _grouped(vectors)
    return _group_gaps(unit, rel, len(vectors))


def relation_nulls(vectors: torch.Tensor, gen: torch.Generator, q_each: float,
                   q_all: float = 0.95, n_perm: int = 1000) -> tuple[float, torch.Tensor]:
    """Both relabelling nulls of `vectors` [n_rel, tau, d] from one set of permutations: the
    q_all-quantile of the aggregate gap (`relation_gap`) and, per relation [n_rel], the
    q_each-quantile of its own gap (`relation_gaps`).

    Relabelling keeps n_rel groups of tau; the null of group g is the gap of whatever tau
    vectors a random relabelling puts in g. With q_each = 1 - 0.05 / n_rel (Bonferroni), a gap
    above its null in every relation is unlikely (< 5%) when no relation has its own direction.
    """
    unit, rel = _grouped(vectors)
    perms = [rel[torch.randperm(len(rel), generator=gen)] for _ in range(n_perm)]
    aggregate = torch.tensor([relation_gap(unit, r) for r in perms])
    each = torch.stack([_group_gaps(unit, r, len(vectors)) for r in perms])  # [n_perm, n_rel]
    return float(torch.quantile(aggregate, q_all)), torch.quantile(each, q_each, dim=0)


def relation_gap_null(vectors: torch.Tensor, gen: torch.Generator, q: float = 0.95,
                      n_perm: int = 1000) -> float:
    """The q-quantile of the relation gap of `vectors` [n_rel, tau, d] under relabelling."""
    unit, rel = _grouped(vectors)
    gaps = [relation_gap(unit, rel[torch.randperm(len(rel), generator=gen)])
            for _ in range(n_perm)]
    return float(torch.quantile(torch.tensor(gaps), q))


def log_error_fit(x: Sequence[float], acc: Sequence[float],
                  min_error: float = 0.01) -> dict[str, float]:
    """Least-squares fit log(1 - acc) = a - b x over the points with error > `min_error`.

    The shape of an exponential error bound exp(-c x) (the held-out error of 2508.00901):
    b > 0 when the error falls with x, R² how well one line carries every point (a data
    collapse when the points come from different sweeps). Returns {"a", "b", "r2", "n"}; NaNs
    when fewer than two points with distinct x qualify.
    """
    xs, err = np.asarray(x, dtype=float), 1 - np.asarray(acc, dtype=float)
    keep = err > min_error
    if keep.sum() < 2 or np.ptp(xs[keep]) == 0:
        return {"a": float("nan"), "b": float("nan"), "r2": float("nan"), "n": int(keep.sum())}
    y = np.log(err[keep])
    slope, a = np.polyfit(xs[keep], y, 1)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - (a + slope * xs[keep])) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return {"a": float(a), "b": float(-slope), "r2": r2, "n": int(keep.sum())}
