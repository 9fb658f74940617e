"""Associative memories of arXiv 2412.06538 §4.4, trained or built by outer products.

Inputs x in [N] and outputs y in [M] have frozen unit-norm random embeddings e_x (rows of
`E`, [N, d]) and u_y (rows of `U`, [M, d]). Row-vector convention throughout (h = e @ W):

    linear:  logits = (e_x @ W) @ U^T                      W: [d, d]          (d^2 params)
    MLP:     logits = ReLU(e_x @ W_in + b_in) @ W_out @ U^T  W_in: [d, m], W_out: [m, d] (2md)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from factlab.models.hooks import HookedModule, HookPoint


def unit_embeddings(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """`n` Gaussian vectors in R^d normalised to unit norm, [n, d]."""
    x = torch.randn(n, d, generator=gen)
    return x / x.norm(dim=1, keepdim=True)


class LinearMemory(HookedModule):
    """logit_y = <u_y, W e_x> with one trainable d x d matrix."""

    def __init__(self, n_inputs: int, n_outputs: int, d: int, gen: torch.Generator):
        super().__init__()
        self.register_buffer("E", unit_embeddings(n_inputs, d, gen))
        self.register_buffer("U", unit_embeddings(n_outputs, d, gen))
        self.W = nn.Parameter(torch.zeros(d, d))
        self.hook_embed = HookPoint()  # [batch, d]
        self.hook_memory_out = HookPoint()  # [batch, d]
        self.setup_hooks()

    @property
    def n_params(self) -> int:
        return self.W.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.hook_embed(self.E[x])
        return self.hook_memory_out(e @ self.W) @ self.U.T

    @torch.no_grad()
    def construct(self, targets: torch.Tensor) -> LinearMemory:
        """Outer-product memory W = sum_x e_x u_{f(x)}^T, so e_x @ W ~ u_{f(x)} + cross-talk."""
        self.W.copy_(self.E.T @ self.U[targets])
        return self


class MLPMemory(HookedModule):
    """logit_y = <u_y, W_out^T ReLU(W_in^T e_x + b_in)> with hidden width m."""

    def __init__(self, n_inputs: int, n_outputs: int, d: int, width: int, gen: torch.Generator):
        super().__init__()
        self.register_buffer("E", unit_embeddings(n_inputs, d, gen))
        self.register_buffer("U", unit_embeddings(n_outputs, d, gen))
        # LeCun-normal init, as in the reference (std = 1/sqrt(fan_in)).
        self.W_in = nn.Parameter(torch.randn(d, width, generator=gen) / math.sqrt(d))
        self.b_in = nn.Parameter(torch.zeros(width))
        self.W_out = nn.Parameter(torch.randn(width, d, generator=gen) / math.sqrt(width))
        self.hook_embed = HookPoint()  # [batch, d]
        self.hook_pre = HookPoint()  # [batch, m]
        self.hook_post = HookPoint()  # [batch, m]
        self.setup_hooks()

    @property
    def n_params(self) -> int:
        """2 m d, the count the capacity plots use (the bias is not counted)."""
        return self.W_in.numel() + self.W_out.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.hook_embed(self.E[x])
        h = self.hook_post(torch.relu(self.hook_pre(e @ self.W_in + self.b_in)))
        return (h @ self.W_out) @ self.U.T

    @torch.no_grad()
    def construct(self, targets: torch.Tensor, threshold: float = 0.5) -> MLPMemory:
        """One hidden unit per input: unit x fires on e_x (<e_x, e_x> = 1 > threshold) and
        writes u_{f(x)}. Needs width >= N; cross-talk <e_x, e_x'> ~ 1/sqrt(d) stays below
        the threshold once d is large enough."""
        n, width = self.E.shape[0], self.W_in.shape[1]
        if width < n:
            raise ValueError(f"construction needs width >= n_inputs, got {width} < {n}")
        self.W_in.zero_()
        self.b_in.fill_(-threshold)
        self.W_out.zero_()
        self.W_in[:, :n] = self.E.T
        self.W_out[:n] = self.U[targets] / (1 - threshold)
        return self
