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
guard (any live member's non-finite loss, gradient or metric raises `DivergenceError`: the
run stops, as one member's `train` would), and gradient clipping (per member, not over the
stack).

vmap pays off only while per-step overhead dominates (measured 3-4x for d = 32 models, a loss
once one model's matmuls fill the cores). `benchmarks/bench_ensemble.py` measures it on the
capacity-memory probes, where it is used (`factlab.pipelines.capacity_search`):
`train_probes_ensemble` trains the probes of several seeds at the same (n, d) at once, and
`search_lockstep` runs the bisections of all seeds of a width in lockstep, grouping their probes
by n. `train.recipes.train_sequential` stacks the seeds of the sequential-learning run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from factlab.train.loop import (
    DivergenceError,
    TrainConfig,
    TrainResult,
    check_finite_grads,
    check_finite_loss,
    check_finite_metrics,
    lr_factor,
    make_optimizer,
    optimizer_step,
)

__all__ = [
    "DivergenceError",
    "Ensemble",
    "train_ensemble",
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
            check_finite_metrics(metrics, step, cfg)
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
        for i, v in enumerate(values):
            if results[i] is None:
                check_finite_loss(v, step, cfg)
        live = torch.tensor([r is None for r in results], device=losses.device)
        opt.zero_grad(set_to_none=True)
        torch.where(live, losses, torch.zeros_like(losses)).sum().backward()
        for p in params:  # finished or diverged members must not spread NaNs into Adam state
            if p.grad is not None:
                p.grad.masked_fill_(~live.view(-1, *([1] * (p.dim() - 1))), 0.0)
        check_finite_grads(params, step, cfg)  # finished members' gradients are zeros
        if cfg.grad_clip > 0:
            _clip_per_member(params, cfg.grad_clip)
        optimizer_step(opt, step, cfg)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            evaluate(done, values)
    return [r if r is not None else TrainResult(cfg.steps, "steps", last[i], best[i])
            for i, r in enumerate(results)]


# ---------------------------------------------------------------------------------------------
# capacity-memory probes (factlab.pipelines.capacity_search)


class StackedMemory:
    """N linear or MLP memories (`factlab.models.memories`) evaluated on all their inputs at once.

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
