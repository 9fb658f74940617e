"""A small pre-norm GPT (nanoGPT-like) with TransformerLens hook points, for the bioS tier.

    x_0 = W_E[tokens] + W_pos[positions]
    x   = x + Attn(LN(x))                    causal multi-head softmax attention
    x   = x + MLP(LN(x))                     GELU, width 4d
    logits = LN(x) W_U

Learned absolute positions (Physics 3.1 uses rotary on GPT-2; at factlab's CPU scale the
sequences are short and positions are learned). Weights follow TransformerLens shapes:
W_Q, W_K, W_V [n_heads, d_model, d_head], W_O [n_heads, d_head, d_model].
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from factlab.config import require
from factlab.models.hooks import HookedModule, HookPoint


@dataclasses.dataclass
class GPTConfig:
    """Sizes of the small GPT."""

    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_ctx: int = 128
    d_vocab: int = 0  # set from the data by the caller
    dropout: float = 0.0

    def check(self) -> None:
        for key in ("d_model", "n_layers", "n_heads", "n_ctx"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.d_model % self.n_heads == 0, "n_heads", "must divide d_model")
        require(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


class Attention(nn.Module):
    """Causal multi-head attention with q/k/v/scores/pattern/z hook points."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        H, d, e = cfg.n_heads, cfg.d_model, cfg.d_model // cfg.n_heads
        std = 0.02
        self.W_Q = nn.Parameter(torch.randn(H, d, e) * std)
        self.W_K = nn.Parameter(torch.randn(H, d, e) * std)
        self.W_V = nn.Parameter(torch.randn(H, d, e) * std)
        self.W_O = nn.Parameter(torch.randn(H, e, d) * std / math.sqrt(2 * cfg.n_layers))
        self.b_Q = nn.Parameter(torch.zeros(H, e))
        self.b_K = nn.Parameter(torch.zeros(H, e))
        self.b_V = nn.Parameter(torch.zeros(H, e))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.register_buffer("causal", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)),
                             persistent=False)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, pos, d] -> [batch, pos, d]."""
        T = x.shape[1]
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x, self.W_Q) + self.b_Q)  # [b, p, h, e]
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K) + self.b_K)
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V) + self.b_V)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~self.causal[:T, :T], float("-inf"))
        pattern = self.hook_pattern(torch.softmax(self.hook_attn_scores(scores), dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))  # [b, q, h, e]
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self.b_O


class MLP(nn.Module):
    """GELU MLP of width 4d with hook_pre / hook_post."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d, m = cfg.d_model, 4 * cfg.d_model
        self.W_in = nn.Parameter(torch.randn(d, m) * 0.02)
        self.b_in = nn.Parameter(torch.zeros(m))
        self.W_out = nn.Parameter(torch.randn(m, d) * 0.02 / math.sqrt(2 * cfg.n_layers))
        self.b_out = nn.Parameter(torch.zeros(d))
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        post = self.hook_post(F.gelu(self.hook_pre(x @ self.W_in + self.b_in)))
        return post @ self.W_out + self.b_out


class Block(nn.Module):
    """Pre-norm residual block with the resid/attn_out/mlp_out hook points."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.mlp = Attention(cfg), MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.hook_resid_pre, self.hook_resid_mid = HookPoint(), HookPoint()
        self.hook_resid_post = HookPoint()
        self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.drop(self.hook_attn_out(self.attn(self.ln1(x)))))
        return self.hook_resid_post(x + self.drop(self.hook_mlp_out(self.mlp(self.ln2(x)))))


class LayerNormFinal(nn.LayerNorm):
    """Final LayerNorm exposing `ln_final.hook_normalized`."""

    def __init__(self, d: int):
        super().__init__(d)
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(super().forward(x))


class GPT(HookedModule):
    """Small pre-norm GPT: tokens [batch, pos] -> logits [batch, pos, d_vocab]."""

    def __init__(self, cfg: GPTConfig, gen: torch.Generator | None = None):
        super().__init__()
        cfg.check()
        require(cfg.d_vocab >= 2, "d_vocab", "must be >= 2")
        self.cfg = cfg
        if gen is not None:  # initialise from the caller's generator, not the global one
            state = torch.random.get_rng_state()
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        self.W_E = nn.Parameter(torch.randn(cfg.d_vocab, cfg.d_model) * 0.02)
        self.W_pos = nn.Parameter(torch.randn(cfg.n_ctx, cfg.d_model) * 0.01)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = LayerNormFinal(cfg.d_model)
        self.W_U = nn.Parameter(torch.randn(cfg.d_model, cfg.d_vocab) * 0.02)
        if gen is not None:
            torch.random.set_rng_state(state)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.setup_hooks()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        x = self.hook_embed(self.W_E[tokens]) + self.hook_pos_embed(self.W_pos[:T])
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x) @ self.W_U
