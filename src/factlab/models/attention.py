"""Single-head causal attention with the positional schemes of the trigger family.

Absolute schemes are tables P [T_max, d] added to the input by the model:
    ape_random   fixed N(0, 1) buffer (÷√d with sqrtd)      [Birth default]
    ape_sincos   fixed sinusoidal table
    ape_learned  trainable table (rows never seen in training keep their initial values)
Relative schemes live inside the first attention layer:
    rope1        rotary embedding of the query h_t and the key W_K h_s (θ = 10000, all d)
    rel_bias     A_ts += b[min(t - s, Δ_max)], learned scalars b initialised to 0
    none         no positions; only the causal mask breaks the symmetry

The attention is Birth's bilinear form (column-vector notation, query on the left):
    A_ts = h_tᵀ W_K h_s / √d,   out_t = W_O Σ_s softmax_s(A_t)_s W_V h_s,
so W_K is the full score matrix (= W_Q W_Kᵀ of the row-vector convention, i.e. TL's W_QK) and
W_O W_V = W_OVᵀ. Hooks use TransformerLens names and shapes with one head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from factlab.models.hooks import HookPoint

POS_SCHEMES = ("ape_random", "ape_learned", "ape_sincos", "rope1", "rel_bias", "none")
ABSOLUTE = ("ape_random", "ape_learned", "ape_sincos")
RELATIVE = ("rope1", "rel_bias")


def uniform_matrix(rows: int, cols: int, bound: float, gen: torch.Generator) -> torch.Tensor:
    """U(-bound, bound) matrix [rows, cols]."""
    return (torch.rand(rows, cols, generator=gen) * 2 - 1) * bound


def sinusoidal_table(T_max: int, d: int) -> torch.Tensor:
    """Transformer sinusoids [T_max, d]: sin on even, cos on odd dimensions."""
    pos = torch.arange(T_max, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)
    table = torch.zeros(T_max, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return table


def positional_table(scheme: str, T_max: int, d: int, gen: torch.Generator,
                     sqrtd: bool = False) -> torch.Tensor | None:
    """The additive table P [T_max, d] of an absolute scheme, else None."""
    if scheme in ("ape_random", "ape_learned"):
        table = torch.randn(T_max, d, generator=gen)
        return table / math.sqrt(d) if sqrtd else table
    if scheme == "ape_sincos":
        return sinusoidal_table(T_max, d)
    return None


def rotate(x: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """RoPE over the sequence axis: x [B, T, d] (d even) rotated by angle t·θ^{-2i/d} per pair."""
    T, d = x.shape[1], x.shape[2]
    freq = theta ** (-torch.arange(0, d, 2, device=x.device, dtype=x.dtype) / d)  # [d/2]
    ang = torch.arange(T, device=x.device, dtype=x.dtype)[:, None] * freq  # [T, d/2]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


class RelativeBias(nn.Module):
    """Learned scalar bias per causal offset δ = t - s, bucket min(δ, Δ_max)."""

    def __init__(self, max_offset: int):
        super().__init__()
        self.max_offset = max_offset
        self.b = nn.Parameter(torch.zeros(max_offset + 1))  # [Δ_max + 1]

    def forward(self, T: int) -> torch.Tensor:
        """Bias [T, T] (query, key); acausal entries get bucket 0 and are masked later."""
        idx = torch.arange(T, device=self.b.device)
        delta = (idx[:, None] - idx[None, :]).clamp(0, self.max_offset)
        return self.b[delta]


class BilinearAttention(nn.Module):
    """One causal head: A = h W_K hᵀ / √d (+ bias), out = softmax(A) h W_Vᵀ W_Oᵀ.

    `pos` is "rope1" or "rel_bias" for the layer that carries a relative scheme, else "none".
    `train_k/v/o` choose which of W_K, W_V, W_O are trained (Birth freezes W_V, W_O¹).
    """

    def __init__(self, d: int, gen: torch.Generator, pos: str = "none", max_offset: int = 255,
                 scale_scores: bool = True, train_k: bool = True, train_v: bool = False,
                 train_o: bool = False, rope_theta: float = 10000.0):
        super().__init__()
        bound = 1 / math.sqrt(d)
        self.d, self.pos, self.rope_theta = d, pos, rope_theta
        self.scale = 1 / math.sqrt(d) if scale_scores else 1.0
        self.W_K = nn.Parameter(uniform_matrix(d, d, bound, gen), requires_grad=train_k)
        self.W_V = nn.Parameter(uniform_matrix(d, d, bound, gen), requires_grad=train_v)
        self.W_O = nn.Parameter(uniform_matrix(d, d, bound, gen), requires_grad=train_o)
        self.rel = RelativeBias(max_offset) if pos == "rel_bias" else None
        self.hook_q = HookPoint()  # [batch, pos, 1, d]
        self.hook_k = HookPoint()  # [batch, pos, 1, d]
        self.hook_v = HookPoint()  # [batch, pos, 1, d]
        self.hook_attn_scores = HookPoint()  # [batch, 1, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, 1, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, 1, d]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, T, d] -> attention output [B, T, d] (before the residual)."""
        T = h.shape[1]
        q = h  # identity query map
        k = h @ self.W_K.T  # k_s = W_K h_s
        if self.pos == "rope1":
            q, k = rotate(q, self.rope_theta), rotate(k, self.rope_theta)
        q = self.hook_q(q[:, :, None])[:, :, 0]
        k = self.hook_k(k[:, :, None])[:, :, 0]
        scores = (q @ k.transpose(1, 2)) * self.scale  # [B, T, T]
        if self.rel is not None:
            scores = scores + self.rel(T)
        causal = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        scores = self.hook_attn_scores(scores[:, None])  # [B, 1, T, T]
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        v = self.hook_v((h @ self.W_V.T)[:, :, None])  # [B, T, 1, d]
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))  # [B, T, 1, d]
        return z[:, :, 0] @ self.W_O.T
