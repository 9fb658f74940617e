"""Associative memories of arXiv 2412.06538 §4.4, trained or built by outer products.

Inputs x in [N] and outputs y in [M] have frozen unit-norm random embeddings e_x (rows of
`E`, [N, d]) and u_y (rows of `U`, [M, d]). Row-vector convention throughout (h = e @ W):

    linear:  logits = (e_x @ W) @ U^T                      W: [d, d]          (d^2 params)
    MLP:     logits = ReLU(e_x @ W_in + b_in) @ W_out @ U^T  W_in: [d, m], W_out: [m, d] (2md)

`MLPMemory.loss(x, y)` is a named fast path for training: the mean cross-entropy of
`forward(x)` against y, computed chunk by chunk through the frozen U so the [batch, M] logits
are never stored; its value and gradients equal `F.cross_entropy(forward(x), y)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from factlab.models.hooks import HookedModule, HookPoint


def unit_embeddings(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """`n` Gaussian vectors in R^d normalised to unit norm, [n, d]."""
    x = torch.randn(n, d, generator=gen)
    return x / x.norm(dim=1, keepdim=True)


class _ChunkedReadoutCE(torch.autograd.Function):
    """mean_i CE(h_i @ Uᵀ, y_i) for a frozen U, rows taken `chunk` at a time.

    Each chunk's logits, softmax and gradient softmax - onehot are formed in one cache-sized
    buffer and turned into dL/dh = (softmax - onehot) U / n at once, so backward is a scale.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, U: torch.Tensor, y: torch.Tensor,  # type: ignore[override]
                chunk: int) -> torch.Tensor:
        n, M = h.shape[0], U.shape[0]
        grad = torch.empty_like(h)
        total = h.new_zeros(())
        # logit_ij <= |h_i| max_j |u_j| =: s_i, so shifting row i by s_i keeps exp <= 1, and an
        # extra input column of -s_i against a row of ones makes the product write the shifted
        # logits itself (no max pass, no subtract pass). A row with s_i > 40 could underflow
        # every exp (logits >= -s_i), so its chunk also subtracts the row max.
        u_max = U.norm(dim=1).max()
        Ut = torch.cat([U.T, U.new_ones(1, M)])  # [d + 1, M]
        buf = h.new_empty(min(chunk, n), M)  # one logits buffer for every chunk
        for start in range(0, n, chunk):
            hc, yc = h[start:start + chunk], y[start:start + chunk]
            shift = hc.norm(dim=1, keepdim=True) * u_max
            logits = torch.mm(torch.cat([hc, -shift], 1), Ut, out=buf[: len(hc)])  # [c, M]
            if bool((shift > 40).any()):
                logits.sub_(logits.amax(1, keepdim=True))
            picked = logits.gather(1, yc[:, None])
            p = logits.exp_()  # in place: the buffer holds exp(logit - shift)
            z = p.sum(1, keepdim=True)
            total += (z.log() - picked).sum()  # the loss does not depend on the shift
            # (softmax - onehot) U = (exp @ U) / z - U[y]: no pass to normalise the buffer
            g = torch.mm(p, U, out=grad[start:start + chunk])
            g.div_(z).sub_(U[yc])
        ctx.save_for_backward(grad.div_(n))
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None


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

    def loss(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """`F.cross_entropy(self(x), y)` without storing the logits (see the module doc).

        With any hook attached it runs the hooked forward instead, so hooks still fire.
        """
        if any(hp._fns for hp in self.hook_dict.values()):
            return F.cross_entropy(self(x), y)
        # bias folded into the product and ReLU in place: two fewer passes over [batch, m]
        h = torch.addmm(self.b_in, self.E[x], self.W_in).relu_() @ self.W_out
        return _ChunkedReadoutCE.apply(h, self.U, y, chunk)

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
