"""Ensembles: train many seeds of one tiny model as one batched model (opt-in).

The members' parameters are stacked along a new leading dimension
(`torch.func.stack_module_state`, once: re-stacking every step silently stops training,
pytorch#120581) and the forward is `vmap(functional_call)`. One optimizer steps the stack on
the summed member losses. Because Adam, AdamW and SGD (with momentum and weight decay) act
elementwise and member i's loss depends only on member i's parameters, every member follows
exactly the trajectory of its own `factlab.train.train` run; only the float rounding of the
batched kernels differs. The rest of `train`'s contract is reproduced per member: evaluation
at step 0, every `eval_every` steps and at the end, early stop at `target_acc` (a finished
member's result is frozen; it keeps stepping with the others, harmlessly), the divergence
guard, and gradient clipping (per member, not over the stack).

vmap pays off only while per-step overhead dominates (specs/ecosystem.md §7: 3-4x for
d = 32 models, a loss once one model's matmuls fill the cores). `benchmarks/bench_ensemble.py`
measures it on the capacity-memory probes, where it is used: `train_memories_ensemble` trains
the probes of several seeds at the same (n, d) at once, and `capacity_rows_lockstep` runs the
bisections of all seeds of a width in lockstep, grouping their probes by n.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from factlab.train import DivergenceError, TrainConfig, TrainResult, lr_factor, make_optimizer

__all__ = [
    "DivergenceError",
    "Ensemble",
    "capacity_rows_lockstep",
    "train_ensemble",
    "train_memories_ensemble",
]


class Ensemble:
    """N same-shaped modules as one: stacked parameters [N, ...] and a vmapped forward."""

    def __init__(self, models: Sequence[nn.Module]):
        from torch.func import stack_module_state

        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.size = len(models)
        self.params, self.buffers = stack_module_state(list(models))
        # a stateless copy to call with the stacked tensors (its own storage is not used)
        self.base = models[0]

    def trainable(self) -> list[torch.Tensor]:
        """The stacked leaves the optimizer steps."""
        return [p for p in self.params.values() if p.requires_grad]

    def __call__(self, *args: Any, in_dims: Any = None) -> torch.Tensor:
        """Run every member on `args` (shared across members unless `in_dims` says otherwise);
        returns outputs stacked on dim 0."""
        from torch.func import functional_call, vmap

        def one(params: dict, buffers: dict, *xs: Any) -> torch.Tensor:
            return functional_call(self.base, (params, buffers), xs)

        dims = (0, 0, *(in_dims if in_dims is not None else (None,) * len(args)))
        return vmap(one, in_dims=dims)(self.params, self.buffers, *args)

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's parameters and buffers as an ordinary state dict."""
        return {k: v[i].detach() for k, v in {**self.params, **self.buffers}.items()}


def _clip_per_member(params: list[torch.Tensor], max_norm: float) -> None:
    """`clip_grad_norm_` applied to each member separately (dim 0 indexes members)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    sq = sum(g.pow(2).flatten(1).sum(1) for g in grads)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))


def train_ensemble(
    params: Sequence[torch.Tensor],
    loss_fn: Callable[[int], torch.Tensor],
    cfg: TrainConfig,
    eval_fn: Callable[[], dict[str, torch.Tensor]] | None = None,
    on_eval: Callable[[int, int, dict[str, float]], None] | None = None,
) -> list[TrainResult]:
    """`factlab.train.train` for a stack of N members; returns one `TrainResult` per member.

    `params` are stacked leaves [N, ...]; `loss_fn(step)` returns the N member losses [N];
    `eval_fn()` returns {metric: [N] tensor}; `on_eval(member, step, metrics)` sees every
    evaluation of a member that is still running.
    """
    params = list(params)
    n = params[0].shape[0]
    opt = make_optimizer(params, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    last: list[dict[str, float]] = [{} for _ in range(n)]
    best: list[dict[str, float]] = [{} for _ in range(n)]
    results: list[TrainResult | None] = [None] * n

    def evaluate(step: int, losses: list[float] | None, members: Sequence[int] = ()) -> None:
        stacked = eval_fn() if eval_fn is not None else {}
        values = {k: v.detach().cpu().tolist() for k, v in stacked.items()}
        for i in members or range(n):
            if results[i] is not None:
                continue
            metrics = {k: float(v[i]) for k, v in values.items()}
            if eval_fn is None and losses is not None:
                metrics = {"loss": losses[i]}
            if losses is not None:
                metrics.setdefault("train_loss", losses[i])
            last[i] = metrics
            if not best[i] or metrics.get("acc", -1.0) > best[i].get("acc", -1.0):
                best[i] = dict(metrics, step=step)
            if on_eval is not None:
                on_eval(i, step, metrics)
            if cfg.target_acc > 0 and metrics.get("acc", 0.0) >= cfg.target_acc:
                results[i] = TrainResult(step, "target", last[i], best[i])

    evaluate(0, None)
    for step in range(cfg.steps):
        if all(r is not None for r in results):
            break
        factor = lr_factor(cfg, step)
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base * factor
        losses = loss_fn(step)
        values = losses.detach().cpu().tolist()
        bad = [i for i, v in enumerate(values) if results[i] is None
               and (not math.isfinite(v) or v > cfg.max_loss)]
        if bad:
            evaluate(step, values, bad)  # as `train` does before giving up on a member
            for i in bad:
                message = (f"training diverged at step {step} (loss={values[i]:.4g}); "
                           f"try a smaller train.lr than {cfg.lr:g}")
                results[i] = TrainResult(step, "diverged", last[i], best[i], message)
        live = torch.tensor([r is None for r in results], device=losses.device)
        opt.zero_grad(set_to_none=True)
        torch.where(live, losses, torch.zeros_like(losses)).sum().backward()
        for p in params:  # finished or diverged members must not spread NaNs into Adam state
            if p.grad is not None:
                p.grad.masked_fill_(~live.view(-1, *([1] * (p.dim() - 1))), 0.0)
        if cfg.grad_clip > 0:
            _clip_per_member(params, cfg.grad_clip)
        opt.step()
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            evaluate(done, values)
    return [r if r is not None else TrainResult(cfg.steps, "steps", last[i], best[i])
            for i, r in enumerate(results)]


# ---------------------------------------------------------------------------------------------
# capacity-memory probes (experiments/capacity.py)


class StackedMemory:
    """N linear or MLP memories (models/memory.py) evaluated on all their inputs at once.

    A hand-batched forward (bmm over the member dimension): for these d <= 32 memories the
    generic `vmap(functional_call)` costs more Python per step than the whole model.
    """

    def __init__(self, models: Sequence[nn.Module]):
        self.size = len(models)
        self.E = torch.stack([m.E for m in models])  # [N, n, d]
        self.Ut = torch.stack([m.U for m in models]).transpose(1, 2)  # [N, d, M]
        self.linear = hasattr(models[0], "W")
        names = ("W",) if self.linear else ("W_in", "b_in", "W_out")
        self.params = {k: torch.stack([getattr(m, k).detach() for m in models]).requires_grad_()
                       for k in names}

    def trainable(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def __call__(self) -> torch.Tensor:
        """Logits of every member on every input, [N, n, M]."""
        p = self.params
        if self.linear:
            return self.E @ p["W"] @ self.Ut
        h = torch.relu(torch.baddbmm(p["b_in"][:, None], self.E, p["W_in"]))
        return h @ p["W_out"] @ self.Ut


def train_memories_ensemble(kind: str, n: int, d: int, width: int, lr: float,
                            seeds: Sequence[int], cfg: Any,
                            device: torch.device) -> list[tuple[float, int]]:
    """`capacity.train_memory` for several seeds at once: [(best accuracy, steps)] per seed."""
    from factlab.experiments.capacity import make_targets
    from factlab.models.memory import LinearMemory, MLPMemory
    from factlab.runtime import make_generator

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
    from factlab.experiments.capacity import bisect_steps, train_memory
    from factlab.runtime import derive_seed

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
