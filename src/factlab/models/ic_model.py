"""The IC-recall one-layer model (arXiv 2605.27774, our reconstruction): trainable attention,
frozen memory.

Only the last position queries. With x_t = W_E[z_t] (frozen), T the last position and p_t the
position vector that the `positions` knob adds to the attention keys and query only (zero when
positions are off, the default; values never see it, so the memory's input is unchanged):

    score_t = (x_T + p_T) W_QK (x_t + p_t)^T        merged W_QK [H=1, d, d], no 1/sqrt(d) (folded in)
    z       = sum_t softmax_t(score)_t x_t           [batch, 1, 1, d]
    u       = z W_OV                                  W_OV [1, d, d] (= I, frozen unless train_ov)
              (+ x_T with `attn_residual`; the default has no residual, as in 2412)
    y       = u + F(u)                                F: a frozen `FrozenMemory` (models.ic_memory)
    logits  = y W_U                                   W_U [d, R D] frozen

W_QK starts at zero (uniform attention) or N(0, init_std^2). Positions: "sinusoidal" (fixed,
each row scaled to unit norm like the embeddings) or "learned" (random unit rows, trainable);
with them the score can tell a subject slot from an answer slot, so the model *could* weight
the two tokens of a pair differently. Hook names follow TransformerLens:
hook_embed, blocks.0.hook_resid_pre, blocks.0.attn.hook_attn_scores / hook_pattern
(batch, head, 1, pos), blocks.0.attn.hook_z, blocks.0.hook_attn_out, blocks.0.mlp.hook_pre /
hook_post (batch, 1, d_mlp), blocks.0.hook_mlp_out, blocks.0.hook_resid_post,
unembed.hook_in / hook_out.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import nn

from factlab.config import require
from factlab.models.hooks import HookedModule, HookPoint
from factlab.models.ic_memory import FrozenMemory


@dataclasses.dataclass
class ICModelConfig:
    """Width and the trainable parts of the IC-recall model."""

    d_model: int = 512
    train_ov: bool = False  # also train W_OV (from I); needed with relation key (a)
    init: Literal["zero", "small"] = "zero"  # W_QK init: 0 (uniform attention) or N(0, std^2)
    init_std: float = 1e-3
    attn_residual: bool = False  # ablation: u = z W_OV + x_T
    positions: Literal["none", "sinusoidal", "learned"] = "none"  # added to keys/query only
    pos_scale: float = 1.0  # norm of each position vector (embeddings have norm 1)

    def check(self) -> None:
        require(self.d_model >= 2, "d_model", f"must be >= 2, got {self.d_model}")
        require(self.init_std >= 0, "init_std", "must be >= 0")
        require(self.pos_scale >= 0, "pos_scale", "must be >= 0")


def sinusoidal_positions(n_pos: int, d: int) -> torch.Tensor:
    """[n_pos, d] sin/cos position vectors (Vaswani et al.), each row scaled to unit norm."""
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]
    freq = torch.exp(-torch.arange(0, d, 2, dtype=torch.float32) * (torch.log(torch.tensor(
        1e4)) / d))
    out = torch.zeros(n_pos, d)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return out / out.norm(dim=1, keepdim=True)


class ICAttention(nn.Module):
    """One head, last-token query, merged W_QK and W_OV (TransformerLens [head, d, d] shapes)."""

    def __init__(self, d: int, cfg: ICModelConfig, gen: torch.Generator, n_pos: int = 0):
        super().__init__()
        init = torch.zeros(1, d, d)
        if cfg.init == "small":
            init = torch.randn(1, d, d, generator=gen) * cfg.init_std
        self.W_QK = nn.Parameter(init)
        self.W_OV = nn.Parameter(torch.eye(d)[None].clone(), requires_grad=cfg.train_ov)
        pos = torch.zeros(n_pos, d)
        if cfg.positions == "sinusoidal":
            pos = sinusoidal_positions(n_pos, d)
        elif cfg.positions == "learned":
            pos = torch.randn(n_pos, d, generator=gen)
            pos = pos / pos.norm(dim=1, keepdim=True)
        self.use_pos = cfg.positions != "none"
        self.W_pos = nn.Parameter(cfg.pos_scale * pos, requires_grad=cfg.positions == "learned")
        self.hook_attn_scores = HookPoint()  # [batch, head, 1, pos]
        self.hook_pattern = HookPoint()  # [batch, head, 1, pos]
        self.hook_z = HookPoint()  # [batch, 1, head, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, pos, d] -> attention output at the last position [batch, 1, d]."""
        keys = x + self.W_pos[: x.shape[1]] if self.use_pos else x  # roles for the score only
        q = torch.einsum("bd,hde->bhe", keys[:, -1], self.W_QK)  # [B, H, d]
        scores = self.hook_attn_scores(torch.einsum("bhe,bpe->bhp", q, keys)[:, :, None])
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))  # [B, H, 1, T]
        z = self.hook_z(torch.einsum("bhqp,bpd->bqhd", pattern, x))  # [B, 1, H, d]
        return torch.einsum("bqhd,hde->bqe", z, self.W_OV)


class ICBlock(nn.Module):
    """Attention (optional residual) then the frozen memory with a residual around it."""

    def __init__(self, d: int, cfg: ICModelConfig, memory: FrozenMemory, gen: torch.Generator,
                 n_pos: int = 0):
        super().__init__()
        self.attn_residual = cfg.attn_residual
        self.attn = ICAttention(d, cfg, gen, n_pos)
        self.mlp = memory
        self.hook_resid_pre = HookPoint()  # [batch, pos, d]
        self.hook_attn_out = HookPoint()  # [batch, 1, d]
        self.hook_mlp_out = HookPoint()  # [batch, 1, d]
        self.hook_resid_post = HookPoint()  # [batch, 1, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, pos, d] -> residual stream at the last position [batch, 1, d]."""
        x = self.hook_resid_pre(x)
        u = self.hook_attn_out(self.attn(x))
        if self.attn_residual:
            u = u + x[:, -1:]
        return self.hook_resid_post(u + self.hook_mlp_out(self.mlp(u)))


class ICRecallModel(HookedModule):
    """tokens [batch, pos] -> logits over the R D answers at the last position [batch, R D].

    `n_pos` is the longest prompt (the position table's length; needed when positions are on).
    """

    def __init__(self, cfg: ICModelConfig, W_E: torch.Tensor, W_U: torch.Tensor,
                 memory: FrozenMemory, gen: torch.Generator, n_pos: int = 64):
        super().__init__()
        self.cfg = cfg
        d = W_E.shape[1]
        self.W_E = nn.Parameter(W_E.clone(), requires_grad=False)  # [V, d]
        self.W_U = nn.Parameter(W_U.clone(), requires_grad=False)  # [d, R D]
        self.blocks = nn.ModuleList([ICBlock(d, cfg, memory, gen, n_pos)])
        self.hook_embed = HookPoint()  # [batch, pos, d]
        self.unembed = nn.Module()
        self.unembed.hook_in = HookPoint()  # [batch, 1, d]
        self.unembed.hook_out = HookPoint()  # [batch, 1, R D]
        self.setup_hooks()

    def trainable(self) -> list[nn.Parameter]:
        """The parameters fine-tuning moves (W_QK, W_OV if asked, learned memory values)."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [batch, pos] -> logits [batch, R D] (the equations of the module docstring)."""
        x = self.hook_embed(self.W_E[tokens])
        y = self.blocks[0](x)
        return self.unembed.hook_out(self.unembed.hook_in(y) @ self.W_U)[:, -1]

    def pattern(self, tokens: torch.Tensor) -> torch.Tensor:
        """Attention of the query over positions, head 0: [batch, pos]."""
        _, cache = self.run_with_cache(tokens, "blocks.0.attn.hook_pattern")
        return cache["blocks.0.attn.hook_pattern"][:, 0, 0]
