"""SGD (with momentum), Adam and AdamW, written out so that a run never imports torch._dynamo.

`torch.optim`'s optimizers wrap their methods in `torch._disable_dynamo`, whose first call
imports the whole compiler stack: 1.2 s of a 11 s factual-recall process measured on one
machine, 3.5 s under a profiler on another. The updates below are the per-tensor updates of
`torch.optim` (the path it takes on CPU), operation for operation, so a run is bit-identical to
one with `torch.optim` on CPU (tests/test_optim.py checks it step by step). On CUDA torch.optim
would default to its multi-tensor kernels; this loop is the single-tensor one everywhere.

    SGD    g <- grad + wd p;  b <- mu b + g (b_1 = g);  p <- p - lr b
    Adam   g <- grad + wd p;  m <- lerp(m, g, 1 - b1);  v <- b2 v + (1 - b2) g^2
           p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    AdamW  p <- (1 - lr wd) p, then the Adam update with wd = 0
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class Optimizer:
    """One parameter group (`param_groups[0]["lr"]` is what schedules set) and per-tensor state."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [{"lr": lr, "weight_decay": weight_decay}]
        self.state: dict[int, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        group = self.param_groups[0]
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.update(p, p.grad, self.state.setdefault(i, {}), group["lr"],
                            group["weight_decay"])

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], lr: float,
               wd: float) -> None:
        """Update `p` in place from `grad` and its per-tensor `state` (the algorithm's step)."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with heavy-ball momentum and L2 weight decay."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = momentum

    def update(self, p, grad, state, lr, wd):
        if wd != 0:
            grad = grad.add(p, alpha=wd)
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.detach().clone()
            else:
                buf.mul_(self.momentum).add_(grad)
            grad = buf
        p.add_(grad, alpha=-lr)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with L2 weight decay; `decoupled=True` is AdamW."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 decoupled: bool = False):
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps, self.decoupled = betas, eps, decoupled

    def update(self, p, grad, state, lr, wd):
        b1, b2 = self.betas
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        state["step"] += 1
        if wd != 0:
            if self.decoupled:
                p.mul_(1 - lr * wd)
            else:
                grad = grad.add(p, alpha=wd)
        m, v, t = state["exp_avg"], state["exp_avg_sq"], float(state["step"])
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v.sqrt() / (1 - b2**t) ** 0.5).add_(self.eps)
        p.addcdiv_(m, denom, value=-(lr / (1 - b1**t)))
