"""The one-layer factual-recall transformer of arXiv 2412.06538 (its §4.1).

Only the last token queries. With x_t = W_E[z_t] (frozen, N(0, 1/d)):

    score^h_t = <x_T W_Q^h, x_t W_K^h> / sqrt(d_h)              over all t, the query included
    z^h       = sum_t softmax_t(score^h) x_t W_V^h
    u         = sum_h z^h W_O^h               (+ x_T when `attn_residual`; the paper has none)
    y         = u + ReLU(u W_in + b_in) W_out  (the MLP; `d_mlp=0` removes it)
    logits    = y W_U                          over the R*D answers, W_U frozen

Weights follow TransformerLens shapes: W_Q, W_K, W_V [H, d, d_h], W_O [H, d_h, d],
W_in [d, m], W_out [m, d], W_E [V, d], W_U [d, n_out]. There is no positional encoding.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from factlab.config import require
from factlab.models.hooks import HookedModule, HookPoint


@dataclasses.dataclass
class OneLayerConfig:
    """Sizes and switches of the one-layer model."""

    d_model: int = 64
    n_heads: int = 8
    d_head: int = 8
    d_mlp: int = 128  # 0 removes the MLP (attention-only)
    attn_residual: bool = False  # add x_T to the attention output
    train_embed: bool = False  # the paper freezes W_E and W_U
    fold_embed: bool = True  # compute through the frozen embedding table (same numbers, faster)

    def check(self) -> None:
        for key in ("d_model", "n_heads", "d_head"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.d_mlp >= 0, "d_mlp", f"must be >= 0, got {self.d_mlp}")


def count_params(cfg: OneLayerConfig) -> int:
    """P = 4 H d_h d + 2 m d, the parameter count of the paper's plots."""
    return 4 * cfg.n_heads * cfg.d_head * cfg.d_model + 2 * cfg.d_mlp * cfg.d_model


class LastTokenAttention(nn.Module):
    """Multi-head softmax attention where only the last position queries."""

    def __init__(self, d: int, n_heads: int, d_head: int, gen: torch.Generator):
        super().__init__()
        H = n_heads
        self.W_Q = nn.Parameter(torch.randn(H, d, d_head, generator=gen) / math.sqrt(d_head))
        self.W_K = nn.Parameter(torch.randn(H, d, d_head, generator=gen) / math.sqrt(d_head))
        self.W_V = nn.Parameter(torch.randn(H, d, d_head, generator=gen) / math.sqrt(d_head))
        self.W_O = nn.Parameter(torch.randn(H, d_head, d, generator=gen) / math.sqrt(d))
        self.hook_q = HookPoint()  # [batch, 1, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, 1, pos]
        self.hook_pattern = HookPoint()  # [batch, head, 1, pos]
        self.hook_z = HookPoint()  # [batch, 1, head, d_head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, pos, d] -> attention output at the last position, [batch, 1, d]."""
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x[:, -1:], self.W_Q))
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K))
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])
        pattern = self.hook_pattern(torch.softmax(self.hook_attn_scores(scores), dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        return torch.einsum("bqhe,hed->bqd", z, self.W_O)

    def forward_folded(self, tokens: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
        """The same output computed through a frozen embedding table W_E [V, d].

        x_t W_K = (W_E W_K)[z_t], so the scores are a [H, V, V] table read at (z_T, z_t) and
        the output is sum_v P_v (W_E W_V)[v] with P_v the attention mass on vocabulary item v.
        This costs O(V^2) instead of O(B T d), several times faster when V << B T. It skips
        hook_q/k/v/z (the caller falls back to `forward` when those are hooked).
        """
        B, T = tokens.shape
        H, _, d_head = self.W_Q.shape
        eq = torch.einsum("vd,hde->hve", W_E, self.W_Q)  # [H, V, d_head]
        ek = torch.einsum("vd,hde->hve", W_E, self.W_K)
        ev = torch.einsum("vd,hde->hve", W_E, self.W_V)
        table = eq @ ek.transpose(1, 2) / math.sqrt(d_head)  # [H, V, V]: (query, key) token
        idx = tokens[:, None, :].expand(B, H, T)
        scores = table[:, tokens[:, -1], :].transpose(0, 1).gather(2, idx)  # [B, H, T]
        pattern = self.hook_pattern(torch.softmax(self.hook_attn_scores(scores[:, :, None]),
                                                  dim=-1))  # [B, H, 1, T]
        mass = pattern.new_zeros(B, H, W_E.shape[0]).scatter_add(2, idx, pattern[:, :, 0])
        z = torch.einsum("bhv,hve->bhe", mass, ev)  # [B, H, d_head]
        return torch.einsum("bhe,hed->bd", z, self.W_O)[:, None]  # [B, 1, d]


class MLP(nn.Module):
    """ReLU MLP with input bias and no output bias (nn.Linear-style uniform init)."""

    def __init__(self, d: int, width: int, gen: torch.Generator):
        super().__init__()
        bound_in, bound_out = 1 / math.sqrt(d), 1 / math.sqrt(width)
        self.W_in = nn.Parameter((torch.rand(d, width, generator=gen) * 2 - 1) * bound_in)
        self.b_in = nn.Parameter((torch.rand(width, generator=gen) * 2 - 1) * bound_in)
        self.W_out = nn.Parameter((torch.rand(width, d, generator=gen) * 2 - 1) * bound_out)
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook_post(torch.relu(self.hook_pre(x @ self.W_in + self.b_in)))
        return h @ self.W_out


class Block(nn.Module):
    """Attention (no residual unless asked) followed by a residual MLP."""

    def __init__(self, cfg: OneLayerConfig, gen: torch.Generator):
        super().__init__()
        self.attn_residual = cfg.attn_residual
        self.attn = LastTokenAttention(cfg.d_model, cfg.n_heads, cfg.d_head, gen)
        self.mlp = MLP(cfg.d_model, cfg.d_mlp, gen) if cfg.d_mlp > 0 else None
        self.hook_resid_pre = HookPoint()  # [batch, pos, d]
        self.hook_attn_out = HookPoint()  # [batch, 1, d]
        self.hook_mlp_out = HookPoint()  # [batch, 1, d]
        self.hook_resid_post = HookPoint()  # [batch, 1, d]

    def forward(self, x: torch.Tensor, folded: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> torch.Tensor:
        """x: [batch, pos, d]; or `folded=(tokens, W_E)` to go through the embedding table."""
        if folded is not None:
            tokens, W_E = folded
            u = self.hook_attn_out(self.attn.forward_folded(tokens, W_E))
            x_last = W_E[tokens[:, -1:]]
        else:
            x = self.hook_resid_pre(x)
            u = self.hook_attn_out(self.attn(x))
            x_last = x[:, -1:]
        if self.attn_residual:
            u = u + x_last
        if self.mlp is not None:
            u = u + self.hook_mlp_out(self.mlp(u))
        return self.hook_resid_post(u)


class OneLayerTransformer(HookedModule):
    """tokens [batch, pos] -> logits over the answers at the last position, [batch, n_out]."""

    def __init__(self, cfg: OneLayerConfig, vocab_size: int, n_outputs: int,
                 gen: torch.Generator):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.W_E = nn.Parameter(torch.randn(vocab_size, d, generator=gen) / math.sqrt(d),
                                requires_grad=cfg.train_embed)
        self.blocks = nn.ModuleList([Block(cfg, gen)])
        self.W_U = nn.Parameter(torch.randn(d, n_outputs, generator=gen) / math.sqrt(d),
                                requires_grad=cfg.train_embed)
        self.hook_embed = HookPoint()  # [batch, pos, d]
        self.unembed = nn.Module()
        self.unembed.hook_in = HookPoint()  # [batch, 1, d]
        self.unembed.hook_out = HookPoint()  # [batch, 1, n_out]
        self.setup_hooks()

    @property
    def n_params(self) -> int:
        return count_params(self.cfg)

    # TransformerLens-style stacked weights: [n_layers, ...] with n_layers = 1.
    @property
    def W_Q(self) -> torch.Tensor:
        return self.blocks[0].attn.W_Q[None]

    @property
    def W_K(self) -> torch.Tensor:
        return self.blocks[0].attn.W_K[None]

    @property
    def W_V(self) -> torch.Tensor:
        return self.blocks[0].attn.W_V[None]

    @property
    def W_O(self) -> torch.Tensor:
        return self.blocks[0].attn.W_O[None]

    @property
    def W_QK(self) -> torch.Tensor:
        """W_Q W_K^T per head, [1, H, d, d]: score = x_T W_QK x_t^T / sqrt(d_h)."""
        return self.W_Q @ self.W_K.transpose(-1, -2)

    @property
    def W_OV(self) -> torch.Tensor:
        """W_V W_O per head, [1, H, d, d]: what attending to x_t writes, x_t W_OV."""
        return self.W_V @ self.W_O

    _UNFOLDED_HOOKS = ("hook_embed", "blocks.0.hook_resid_pre", "blocks.0.attn.hook_q",
                       "blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.attn.hook_z")

    def _can_fold(self) -> bool:
        """Fold when the embedding is frozen and no hook needs the per-position tensors."""
        return (self.cfg.fold_embed and not self.W_E.requires_grad
                and not any(self.hook_dict[n]._fns for n in self._UNFOLDED_HOOKS))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._can_fold():
            y = self.blocks[0](None, folded=(tokens, self.W_E))
        else:
            y = self.blocks[0](self.hook_embed(self.W_E[tokens]))
        logits = self.unembed.hook_out(self.unembed.hook_in(y) @ self.W_U)
        return logits[:, -1]
