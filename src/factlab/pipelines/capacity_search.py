"""The capacity search of every seed at one width in lockstep: probes of equal n batched as
one stacked ensemble (`capacity ... ensemble=true`), logging exactly what the one-seed loop logs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from factlab.analysis.search import bisect_steps
from factlab.models.memories import LinearMemory, MLPMemory
from factlab.runtime import derive_seed, make_generator
from factlab.train.ensemble import StackedMemory, train_ensemble
from factlab.train.recipes import make_targets, train_memory


def train_memories_ensemble(kind: str, n: int, d: int, width: int, lr: float,
                            seeds: Sequence[int], cfg: Any,
                            device: torch.device) -> list[tuple[float, int]]:
    """`capacity.train_memory` for several seeds at once: [(best accuracy, steps)] per seed."""

    targets, n_out = make_targets(n, cfg)
    models = []
    for seed in seeds:  # built exactly as train_memory builds them
        gen = make_generator(seed)
        if kind == "linear":
            models.append(LinearMemory(n, n_out, d, gen))
        else:
            models.append(MLPMemory(n, n_out, d, width, gen))
    stack = StackedMemory([m.to(device) for m in models])
    y = targets.to(device)

    def loss_fn(step: int) -> torch.Tensor:
        logp = stack().log_softmax(-1)  # [N, n, n_out]; full batch: every x in [n]
        return -logp.gather(-1, y.expand(stack.size, n)[..., None]).squeeze(-1).mean(1)

    @torch.no_grad()
    def eval_fn() -> dict[str, torch.Tensor]:
        return {"acc": (stack().argmax(-1) == y).float().mean(1)}

    tcfg = dataclasses.replace(cfg.train, lr=lr, target_acc=cfg.threshold)
    results = train_ensemble(stack.trainable(), loss_fn, tcfg, eval_fn)
    return [(r.best_eval.get("acc", 0.0), r.steps) for r in results]


def capacity_rows_lockstep(kind: str, cfg: Any, d: int, width: int, lo: int, hi: int,
                           device: torch.device) -> list[tuple[int, list[dict[str, Any]]]]:
    """The bisections of every seed in `cfg.seeds` at one width, probes batched by n.

    Returns, per seed (in `cfg.seeds` order), (capacity, probe records in the order the
    sequential search makes them), so the caller can log exactly what the loop version logs.
    """

    lrs = cfg.lr_grid or (cfg.train.lr,)
    searches = {s: bisect_steps(lo, hi, cfg.tolerance) for s in cfg.seeds}
    asked = {s: next(g) for s, g in searches.items()}
    memo: dict[int, dict[int, bool]] = {s: {} for s in cfg.seeds}
    records: dict[int, list[dict[str, Any]]] = {s: [] for s in cfg.seeds}
    capacity: dict[int, int] = {}
    while asked:
        # answer memoised probes without training (as the sequential memo does)
        for s in [s for s in asked if asked[s] in memo[s]]:
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
                run_seeds = [derive_seed(cfg.seed, s, d, width, n) for s in group]
                if len(group) == 1:
                    outs = [train_memory(kind, n, d, width, lr, run_seeds[0], cfg, device)]
                else:
                    outs = train_memories_ensemble(kind, n, d, width, lr, run_seeds, cfg,
                                                   device)
                for s, (acc, steps) in zip(group, outs):
                    ok = acc >= cfg.threshold
                    records[s].append({"n": n, "lr": lr, "acc": acc, "steps": steps,
                                       "success": ok})
                    if ok:
                        memo[s][n] = True
                        del pending[s]
            if not pending:
                break
        for s, n in pending.items():
            memo[s][n] = False
    return [(capacity[s], records[s]) for s in cfg.seeds]
