"""The standard transformer of the trigger family: a small pre-norm GPT, every weight trained.

    x_0 = W_E[z] (+ W_pos[t] when pos = "ape_learned")
    x   = x + Attn(LN(x))        causal multi-head softmax attention (RoPE on q, k per head
                                  when pos = "rope"), with biases
    x   = x + MLP(LN(x))         ReLU MLP of width 4d, with biases
    logits = LN(x) W_U

It is the control of arXiv 2306.00802 §3 against the simplified memory model: LayerNorm, MLPs
in every block, trained embeddings. Hooks keep TransformerLens names; patterns are
`blocks.{l}.attn.hook_pattern` [batch, head, query, key].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from factlab.config import require
from factlab.models.attention import rotate
from factlab.models.hooks import HookedModule, HookPoint

STANDARD_POS = ("ape_learned", "rope")


@dataclasses.dataclass
class StandardConfig:
    """Sizes and positional scheme of the standard transformer."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    pos: Literal["ape_learned", "rope"] = "ape_learned"
    max_len: int = 1024  # rows of the learned table; rows never trained keep their init
    rope_theta: float = 10000.0

    def check(self) -> None:
        require(self.d_model >= 2 and self.n_layers >= 1, "d_model", "needs d >= 2, >= 1 layer")
        require(self.n_heads >= 1 and self.d_model % self.n_heads == 0, "n_heads",
                "must divide d_model")
        require(self.pos in STANDARD_POS, "pos", f"must be one of {', '.join(STANDARD_POS)}")
        require(self.pos != "rope" or (self.d_model // self.n_heads) % 2 == 0, "d_model",
                "d_model / n_heads must be even for pos=rope")
        require(self.max_len >= 2, "max_len", "must be >= 2")
        require(self.rope_theta > 1, "rope_theta", "must be > 1")


class MultiHeadAttention(nn.Module):
    """Causal multi-head attention: softmax(q kᵀ/√e) v per head, then W_O."""

    def __init__(self, cfg: StandardConfig):
        super().__init__()
        d, H = cfg.d_model, cfg.n_heads
        self.H, self.e, self.rope, self.theta = H, d // H, cfg.pos == "rope", cfg.rope_theta
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.hook_pattern = HookPoint()  # [batch, head, query, key]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, d] -> [B, T, d]."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.H, self.e).unbind(2)  # each [B, T, H, e]
        if self.rope:  # rotate each head's q and k over the sequence axis
            q = rotate(q.transpose(1, 2).reshape(B * self.H, T, self.e), self.theta)
            k = rotate(k.transpose(1, 2).reshape(B * self.H, T, self.e), self.theta)
            q, k = q.view(B, self.H, T, self.e), k.view(B, self.H, T, self.e)
        else:
            q, k = q.transpose(1, 2), k.transpose(1, 2)
        if not self.hook_pattern.active:  # the same softmax(q k^T / sqrt(e)) v, fused
            v = v.transpose(1, 2)  # [B, H, T, e]
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
            return self.out(self.hook_z(z).reshape(B, T, -1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.e)  # [B, H, T, T]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        pattern = self.hook_pattern(torch.softmax(scores.masked_fill(~causal, float("-inf")), -1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        return self.out(z.reshape(B, T, -1))


class StandardBlock(nn.Module):
    """Pre-norm block: x + Attn(LN x), then + MLP(LN x)."""

    def __init__(self, cfg: StandardConfig):
        super().__init__()
        d = cfg.d_model
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MultiHeadAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))
        self.hook_resid_pre, self.hook_attn_out = HookPoint(), HookPoint()
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = x + self.hook_attn_out(self.attn(self.ln1(x)))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln2(x))))


class StandardTransformer(HookedModule):
    """tokens [batch, pos] -> logits [batch, pos, N]; every parameter trains."""

    def __init__(self, cfg: StandardConfig, n_vocab: int, gen: torch.Generator):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d = cfg.d_model
        self.W_E = nn.Parameter(torch.randn(n_vocab, d, generator=gen) * 0.02)
        self.W_pos = nn.Parameter(torch.randn(cfg.max_len, d, generator=gen) * 0.02,
                                  requires_grad=cfg.pos == "ape_learned")
        self.blocks = nn.ModuleList(StandardBlock(cfg) for _ in range(cfg.n_layers))
        for name, p in self.blocks.named_parameters():  # seeded init, not the global RNG
            with torch.no_grad():
                if name.endswith("weight") and p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
                elif name.endswith("bias"):
                    p.zero_()
        self.ln_final = nn.LayerNorm(d)
        self.W_U = nn.Parameter(torch.randn(d, n_vocab, generator=gen) * 0.02)
        self.hook_embed = HookPoint()
        self.setup_hooks()

    @property
    def absolute(self) -> bool:
        """Whether positions enter as an additive table."""
        return self.cfg.pos == "ape_learned"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T, N]."""
        T = tokens.shape[1]
        h = self.hook_embed(self.W_E[tokens])
        if self.absolute:
            if self.W_pos.shape[0] < T:
                raise ValueError(f"sequence length {T} exceeds max_len {self.W_pos.shape[0]}")
            h = h + self.W_pos[:T]
        for block in self.blocks:
            h = block(h)
        return self.ln_final(h) @ self.W_U
