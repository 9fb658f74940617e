"""The associative-memory capacity search (arXiv 2412.06538 Fig. 1): for each width and seed,
bisect the number of associations N for the largest N a trained memory stores at
`cfg.threshold` accuracy, best over the lr grid.

A memorisation claim: a probe's "validation" is its training set (all N associations), so the
lr grid is read on it by definition; capacity is the best over settings. Two drivers give the
same records: one seed at a time, or every seed of a width in lockstep with probes of equal n
trained as one stacked ensemble (`ensemble=true`).

Each search also says whether its capacity is censored, i.e. only a bound: it ended at the top
of the bracket, or below its bottom (even N = d failed: the memory did not learn at all), or the
deciding failure (the smallest failed N above the capacity) ended on its step budget while its
accuracy still rose. A verdict must not read a censored capacity as a measurement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from factlab.analysis.search import bisect_largest, bisect_steps
from factlab.runtime import derive_seed, progress
from factlab.train.ensemble import StackedMemory, train_ensemble
from factlab.train.recipes import (
    MemoryProbe,
    make_memory,
    make_targets,
    starved,
    train_memory_probe,
)

# The base of every probe's seed since the single-seed version (it read cfg.seed = 0): kept so
# that seed s trains exactly the probes it trained before.
_SALT = 0


def bracket(kind: str, d: int, ratio: float) -> tuple[int, int]:
    """The reference search bracket: [d, d^2/2] (linear) or [d, c d^2] (MLP)."""
    if kind == "linear":
        return d, max(d + 1, d * d // 2)
    return d, max(d + 1, int(ratio * d * d))


def cells(kind: str, cfg: Any) -> list[tuple[int, float, int]]:
    """(d, ratio, width) for every grid cell; the linear memory has no width."""
    if kind == "linear":
        return [(d, 0.0, 0) for d in cfg.d]
    return [(d, c, max(1, int(c * d))) for c in cfg.width_ratio for d in cfg.d]


def n_params(kind: str, d: int, width: int) -> int:
    """d^2 (linear) or 2 m d (MLP): the parameter count the claim is stated in."""
    return d * d if kind == "linear" else 2 * width * d


def censoring(capacity: int, lo: int, hi: int, records: Sequence[dict[str, Any]]) -> str:
    """Why a search's capacity is only a bound ("" when it is a measurement)."""
    if capacity >= hi:
        return f"capacity at the bracket top N = {hi}"
    if capacity < lo:
        return f"capacity {capacity} below the bracket bottom N = {lo} (even N = d failed)"
    failed = sorted({r["n"] for r in records if r["n"] > capacity}
                    - {r["n"] for r in records if r["success"]})
    if failed and any(r["starved"] for r in records if r["n"] == failed[0]):
        return f"the deciding probe N = {failed[0]} ended on its step budget while still improving"
    return ""


def _record(n: int, lr: float, probe: MemoryProbe, threshold: float) -> dict[str, Any]:
    return {"n": n, "lr": lr, "acc": probe.acc, "steps": probe.steps,
            "success": probe.acc >= threshold, "starved": probe.starved}


def search_one(kind: str, cfg: Any, d: int, width: int, lo: int, hi: int, seed: int,
               device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """One seed's bisection: (capacity, probe records in the order they were made)."""
    lrs = cfg.lr_grid or (cfg.train.lr,)
    records: list[dict[str, Any]] = []
    memo: dict[int, bool] = {}

    def succeeds(n: int) -> bool:
        if n not in memo:
            memo[n] = False
            for lr in lrs:  # the first lr that stores all n associations decides
                probe = train_memory_probe(kind, n, d, width, lr,
                                           derive_seed(_SALT, seed, d, width, n), cfg, device)
                records.append(_record(n, lr, probe, cfg.threshold))
                if records[-1]["success"]:
                    memo[n] = True
                    break
        return memo[n]

    return bisect_largest(lo, hi, succeeds, cfg.tolerance), records


def train_probes_ensemble(kind: str, n: int, d: int, width: int, lr: float,
                         seeds: Sequence[int], cfg: Any, device: torch.device) -> list[MemoryProbe]:
    """`train_memory_probe` for several run seeds at once, as one stacked model."""
    targets, _ = make_targets(n, cfg)
    stack = StackedMemory([make_memory(kind, n, d, width, s, cfg).to(device) for s in seeds])
    y = targets.to(device)
    curves: list[list[tuple[int, float]]] = [[] for _ in seeds]

    def loss_fn(step: int) -> torch.Tensor:
        logp = stack().log_softmax(-1)  # [N, n, n_out]; full batch: every x in [n]
        return -logp.gather(-1, y.expand(stack.size, n)[..., None]).squeeze(-1).mean(1)

    @torch.no_grad()
    def eval_fn() -> dict[str, torch.Tensor]:
        return {"acc": (stack().argmax(-1) == y).float().mean(1)}

    tcfg = dataclasses.replace(cfg.train, lr=lr, target_acc=cfg.threshold)
    results = train_ensemble(stack.trainable(), loss_fn, tcfg, eval_fn,
                             on_eval=lambda i, step, m: curves[i].append((step, m["acc"])))
    return [MemoryProbe(r.best_eval.get("acc", 0.0), r.steps, r.stop_reason,
                        starved(r, c, cfg.threshold)) for r, c in zip(results, curves)]


def train_memories_ensemble(kind: str, n: int, d: int, width: int, lr: float,
                            seeds: Sequence[int], cfg: Any,
                            device: torch.device) -> list[tuple[float, int]]:
    """`train_memory` for several run seeds at once: [(best accuracy, steps)] per seed."""
    return [(p.acc, p.steps) for p in train_probes_ensemble(kind, n, d, width, lr, seeds, cfg,
                                                            device)]


def search_lockstep(kind: str, cfg: Any, d: int, width: int, lo: int, hi: int,
                    device: torch.device) -> list[tuple[int, list[dict[str, Any]]]]:
    """The bisections of every seed in `cfg.seeds` at one width, probes batched by n.

    Returns, per seed (in `cfg.seeds` order), what `search_one` returns for it.
    """
    lrs = cfg.lr_grid or (cfg.train.lr,)
    searches = {s: bisect_steps(lo, hi, cfg.tolerance) for s in cfg.seeds}
    asked = {s: next(g) for s, g in searches.items()}
    memo: dict[int, dict[int, bool]] = {s: {} for s in cfg.seeds}
    records: dict[int, list[dict[str, Any]]] = {s: [] for s in cfg.seeds}
    capacity: dict[int, int] = {}
    while asked:
        for s in [s for s in asked if asked[s] in memo[s]]:  # memoised probes: no training
            try:
                asked[s] = searches[s].send(memo[s][asked[s]])
            except StopIteration as stop:
                capacity[s] = stop.value
                del asked[s]
        if not asked or any(asked[s] in memo[s] for s in asked):
            continue
        pending = dict(asked)  # seed -> n; each lr is tried until the first success
        for lr in lrs:
            by_n: dict[int, list[int]] = {}
            for s, n in pending.items():
                by_n.setdefault(n, []).append(s)
            for n, group in by_n.items():
                run_seeds = [derive_seed(_SALT, s, d, width, n) for s in group]
                if len(group) == 1:
                    probes = [train_memory_probe(kind, n, d, width, lr, run_seeds[0], cfg,
                                                 device)]
                else:
                    probes = train_probes_ensemble(kind, n, d, width, lr, run_seeds, cfg,
                                                   device)
                for s, probe in zip(group, probes):
                    records[s].append(_record(n, lr, probe, cfg.threshold))
                    if records[s][-1]["success"]:
                        memo[s][n] = True
                        del pending[s]
            if not pending:
                break
        for s, n in pending.items():
            memo[s][n] = False
    return [(capacity[s], records[s]) for s in cfg.seeds]


def capacity_rows(kind: str, cfg: Any, device: torch.device,
                  log: Callable[..., None] | None = None,
                  show_progress: bool = False) -> list[dict[str, Any]]:
    """Every (cell, seed) search of the grid: one row each, with its censoring reason.

    `log(step, split, **record)` receives each probe ("search") and each result ("capacity"),
    with `seed` fields, in the same order for both drivers.
    """
    log = log or (lambda *a, **k: None)
    rows: list[dict[str, Any]] = []
    probe = 0
    for d, ratio, width in progress(cells(kind, cfg), desc=f"capacity-{kind}",
                                    enabled=show_progress):
        lo, hi = bracket(kind, d, ratio)
        if cfg.ensemble:
            results = search_lockstep(kind, cfg, d, width, lo, hi, device)
        else:
            results = [search_one(kind, cfg, d, width, lo, hi, s, device) for s in cfg.seeds]
        for seed, (cap, records) in zip(cfg.seeds, results):
            for rec in records:
                log(probe, "search", d=d, width=width, ratio=ratio, seed=seed, **rec)
                probe += 1
            row = {"d": d, "ratio": ratio, "width": width, "seed": seed,
                   "params": n_params(kind, d, width), "capacity": cap,
                   "censored": censoring(cap, lo, hi, records)}
            rows.append(row)
            log(len(rows) - 1, "capacity", **row)
    return rows
