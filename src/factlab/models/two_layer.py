"""The simplified two-layer associative-memory transformer of Birth §4.2 (arXiv 2306.00802).

One head per layer, no LayerNorm, no biases. Column-vector notation as in the paper (the d×d
matrices act on column vectors; code applies them as h @ W.T):

    h⁰_t = E[z_t] + P[t]                               (P dropped for relative/none schemes)
    h¹_t = h⁰_t + W_O¹ Σ_s softmax_s(h⁰_tᵀ W_K¹ h⁰_s / √d) W_V¹ h⁰_s
    h²_t = h¹_t + W_O² Σ_s softmax_s(h¹_tᵀ W_K² h¹_s / √d) W_V² h¹_s
    h³_t = h²_t + W_F h²_t                             (optional final FFN; or a ReLU MLP)
    ξ_t  = h³_t @ W_U                                  (W_U [d, N], TransformerLens shape)

Trained: W_K¹, W_K², W_O², W_F (and E, W_U unless frozen). Frozen random remappings: W_V¹,
W_O¹, W_V². P is a buffer (trainable only for `ape_learned`). `n_layers=1` keeps one layer
shaped like layer 2 (trained W_K and W_O) as the no-induction control [reconstruction].

`logits_at(tokens, mask)` is a named fast path for training on a subset of positions (e.g.
Birth's `loss_on=head`): it returns `forward(tokens)[mask]` while computing the last layer's
queries, FFN and unembedding only at the masked positions and reading the frozen products
(W_O¹W_V¹, and E, P times W_K¹ or W_O¹W_V¹) from per-call tables; `tests/test_fast_paths.py`
checks its logits and gradients against the plain forward.

`reference_construction` writes the hand-built memories of Birth §7 into a model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from factlab.config import require
from factlab.models.attention import (
    ABSOLUTE,
    POS_SCHEMES,
    BilinearAttention,
    positional_table,
    rotate,
    uniform_matrix,
)
from factlab.models.hooks import HookedModule, HookPoint


@dataclasses.dataclass
class TwoLayerConfig:
    """Sizes and switches of the simplified model (defaults: Birth's reference)."""

    d_model: int = 64
    n_layers: int = 2  # 2, or 1 for the one-layer control
    pos: Literal["ape_random", "ape_learned", "ape_sincos", "rope1", "rel_bias",
                 "none"] = "ape_random"
    max_len: int = 1024  # T_max of the positional table (longer prompts need more)
    rel_max_offset: int = -1  # Δ_max of rel_bias; -1 means T_train - 1
    final_ffn: Literal["none", "linear", "mlp"] = "linear"
    freeze_embeddings: bool = True
    freeze_output: bool = True
    tie_output: bool = False  # W_U = Eᵀ/√d
    sqrtd_embeddings: bool = False  # E ~ N(0, 1/d), P ÷ √d
    scale_scores: bool = True  # divide scores by √d
    rope_theta: float = 10000.0

    def check(self) -> None:
        require(self.d_model >= 2, "d_model", f"must be >= 2, got {self.d_model}")
        require(self.n_layers in (1, 2), "n_layers", f"must be 1 or 2, got {self.n_layers}")
        require(self.pos in POS_SCHEMES, "pos", f"must be one of {', '.join(POS_SCHEMES)}")
        require(self.max_len >= 2, "max_len", f"must be >= 2, got {self.max_len}")
        require(self.rel_max_offset >= -1, "rel_max_offset", "must be >= 1 (or -1 = T_train - 1)")
        require(self.pos != "rope1" or self.d_model % 2 == 0, "d_model",
                "must be even for pos=rope1")


class FinalFFN(nn.Module):
    """W_F h (linear, d×d) or a bias-free ReLU MLP d→4d→d; hook names of a TL block MLP."""

    def __init__(self, d: int, kind: str, gen: torch.Generator):
        super().__init__()
        self.kind = kind
        bound = 1 / math.sqrt(d)
        if kind == "linear":
            self.W_F = nn.Parameter(uniform_matrix(d, d, bound, gen))  # column notation
        else:
            self.W_in = nn.Parameter(uniform_matrix(d, 4 * d, bound, gen))  # [d, 4d]
            self.W_out = nn.Parameter(uniform_matrix(4 * d, d, 1 / math.sqrt(4 * d), gen))
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h [..., d] -> FFN(h) [..., d] (without the residual)."""
        if self.kind == "linear":
            return self.hook_post(self.hook_pre(h @ self.W_F.T))
        return self.hook_post(torch.relu(self.hook_pre(h @ self.W_in))) @ self.W_out


class Block(nn.Module):
    """Residual attention, plus the final FFN when this is the last block and it has one."""

    def __init__(self, attn: BilinearAttention, ffn: FinalFFN | None):
        super().__init__()
        self.attn = attn
        self.mlp = ffn
        self.hook_resid_pre = HookPoint()  # [batch, pos, d]
        self.hook_attn_out = HookPoint()  # [batch, pos, d]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d]
        self.hook_mlp_out = HookPoint()  # [batch, pos, d] (fires only when the block has an mlp)
        self.hook_resid_post = HookPoint()  # [batch, pos, d]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.hook_resid_pre(h)
        h = self.hook_resid_mid(h + self.hook_attn_out(self.attn(h)))
        if self.mlp is not None:
            h = h + self.hook_mlp_out(self.mlp(h))
        return self.hook_resid_post(h)


class TwoLayerModel(HookedModule):
    """tokens [batch, pos] -> logits [batch, pos, N] of the simplified Birth model."""

    def __init__(self, cfg: TwoLayerConfig, n_vocab: int, gen: torch.Generator,
                 train_len: int = 256):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        emb = torch.randn(n_vocab, d, generator=gen)
        self.W_E = nn.Parameter(emb / math.sqrt(d) if cfg.sqrtd_embeddings else emb,
                                requires_grad=not cfg.freeze_embeddings)
        table = positional_table(cfg.pos, cfg.max_len, d, gen, cfg.sqrtd_embeddings)
        if cfg.pos == "ape_learned":
            self.W_pos = nn.Parameter(table)
        else:
            self.register_buffer("W_pos", table if table is not None else torch.zeros(0, d))
        max_offset = cfg.rel_max_offset if cfg.rel_max_offset > 0 else max(1, train_len - 1)
        blocks = []
        for layer in range(cfg.n_layers):
            first, last = layer == 0, layer == cfg.n_layers - 1
            induction_layer = not first or cfg.n_layers == 1  # trained W_O
            attn = BilinearAttention(
                d, gen, pos=cfg.pos if first and cfg.pos in ("rope1", "rel_bias") else "none",
                max_offset=max_offset, scale_scores=cfg.scale_scores, train_k=True,
                train_v=False, train_o=induction_layer, rope_theta=cfg.rope_theta)
            ffn = FinalFFN(d, cfg.final_ffn, gen) if last and cfg.final_ffn != "none" else None
            blocks.append(Block(attn, ffn))
        self.blocks = nn.ModuleList(blocks)
        if cfg.tie_output:
            w_u = emb.T / math.sqrt(d)
        else:
            w_u = uniform_matrix(d, n_vocab, 1 / math.sqrt(d), gen)
        self.W_U = nn.Parameter(w_u.clone(), requires_grad=not cfg.freeze_output)  # [d, N]
        self.hook_embed = HookPoint()  # [batch, pos, d]
        self.hook_pos_embed = HookPoint()  # [batch, pos, d]
        self.unembed = nn.Module()
        self.unembed.hook_in = HookPoint()  # [batch, pos, d]
        self.unembed.hook_out = HookPoint()  # [batch, pos, N]
        self.setup_hooks()

    @property
    def absolute(self) -> bool:
        """Whether positions enter as an additive table."""
        return self.cfg.pos in ABSOLUTE

    def frozen_names(self) -> list[str]:
        """Parameters that never train (the random remappings, and E/W_U when frozen)."""
        return [n for n, p in self.named_parameters() if not p.requires_grad]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """h⁰ [B, T, d] = E[z] (+ P[t] for absolute schemes)."""
        T = tokens.shape[1]
        h = self.hook_embed(self.W_E[tokens])
        if self.absolute:
            if self.W_pos.shape[0] < T:
                raise ValueError(f"sequence length {T} exceeds max_len {self.W_pos.shape[0]}")
            h = h + self.hook_pos_embed(self.W_pos[:T].expand_as(h))
        return h

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> logits [B, T, N]."""
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h)
        return self.unembed.hook_out(self.unembed.hook_in(h) @ self.W_U)

    # ------------------------------------------------------------------ fast path

    def logits_at(self, tokens: torch.Tensor, mask: torch.Tensor, group_rows: int = 32,
                  query_block: int = 64) -> torch.Tensor:
        """`forward(tokens)[mask]` ([M, N], row-major order), with fewer FLOPs.

        Every layer but the last runs at all positions (its output feeds the last layer's keys
        and values); the last layer's query, its value read-out, the FFN and W_U run only at
        the M masked positions. Frozen linear maps are folded: the value path is one d×d
        product W_O W_V, and with frozen E (and a fixed P) the products E W, P W are tables
        read by token and position instead of a [B, T, d] × [d, d] product.
        Rows are sorted by their count of masked positions and taken `group_rows` at a time,
        each group padded only to its own largest count. The earlier layers' queries go
        `query_block` positions at a time, each block against the keys up to its end only
        (a causal query never reads later keys): at T = 256 that is 5/8 of the full [T, T]
        scores and their softmax. Attached hooks need every position,
        so with any hook the plain forward runs and is indexed.
        """
        if any(hp._fns for hp in self.hook_dict.values()):
            return self(tokens)[mask]
        B, T = tokens.shape
        h = self.embed(tokens)
        pos = torch.arange(T, device=tokens.device)
        for i, block in enumerate(self.blocks[:-1]):
            attn = block.attn
            fold = i == 0 and self._foldable()
            # folded keys are a table lookup; each query block then looks up its own keys,
            # since the backward of a slice of k writes a zero-filled [B, T, d] gradient
            keys = self._table(tokens, attn.W_K) if fold and attn.pos != "rope1" else None
            q = h
            k = F.embedding(*keys) if keys else self._project(tokens, h, attn.W_K, fold)
            v = self._project(tokens, h, attn.W_O @ attn.W_V, fold)
            if attn.pos == "rope1":
                q, k = rotate(q, attn.rope_theta), rotate(k, attn.rope_theta)
            z = []
            for a in range(0, T, query_block):
                b = min(a + query_block, T)
                k_b = F.embedding(keys[0][:, :b], keys[1]) if keys and b < T else k[:, :b]
                z.append(self._attend(attn, q[:, a:b], k_b, v[:, :b], pos[a:b]))
            h = h + torch.cat(z, 1)
        attn, mlp = self.blocks[-1].attn, self.blocks[-1].mlp
        rope = attn.pos == "rope1"
        # rows sorted by count, then split into groups (split's backward is one cat)
        counts = mask.sum(1)
        by_count = torch.argsort(counts, descending=True)
        counts = counts[by_count]
        sorted_mask = mask[by_count]
        rank = (mask.flatten().cumsum(0) - 1).view(B, T)[by_count]  # (b, t) among masked ones
        h_s = h.index_select(0, by_count)
        if rope:  # rotated queries; keys W_K h_s at every position
            q_s = rotate(h_s, attn.rope_theta)
            k_s = rotate(h_s @ attn.W_K.T, attn.rope_theta)
        else:  # h_tᵀ W_K h_s = (h_t W_K) · h_s: the d×d product only at the queries
            q_s = k_s = h_s
        W_OV = attn.W_O @ attn.W_V
        outs, ranks = [], []
        groups = zip(h_s.split(group_rows), q_s.split(group_rows), k_s.split(group_rows),
                     counts.split(group_rows), sorted_mask.split(group_rows),
                     rank.split(group_rows))
        for h_g, q_g, k_g, c_g, m_g, r_g in groups:
            Q = int(c_g[0])
            if Q == 0:
                break
            # the masked positions of each row first, in order; padding repeats real positions
            order = torch.sort((~m_g).to(torch.int8), dim=1, stable=True).indices[:, :Q]
            keep = (pos[:Q] < c_g[:, None]).flatten().nonzero()[:, 0]
            idx = order[..., None].expand(*order.shape, h.shape[-1])
            q = q_g.gather(1, idx)
            z = self._attend(attn, q if rope else q @ attn.W_K, k_g, h_g, order)  # [g, Q, d]
            out = h_g.gather(1, idx) + z @ W_OV.T
            outs.append(out.flatten(0, 1).index_select(0, keep))
            ranks.append(r_g.gather(1, order).flatten()[keep])
        h_q = torch.cat(outs).index_select(0, torch.argsort(torch.cat(ranks)))  # row-major
        if mlp is not None:
            h_q = h_q + mlp(h_q)
        return h_q @ self.W_U

    @staticmethod
    def _attend(attn: BilinearAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                pos: torch.Tensor) -> torch.Tensor:
        """Σ_s softmax_s(q_t · k_s · scale + bias) v_s over keys s <= pos_t.

        One fused multiply-add writes scores and mask together (baddbmm); on CPU this beats the
        fused attention kernel, whose backward also recomputes the scores and grads of q, v.
        """
        T = k.shape[1]
        delta = pos[..., None] - torch.arange(T, device=k.device)  # [(g,) Q, T]
        bias = torch.zeros(delta.shape, dtype=q.dtype, device=q.device)
        if attn.rel is not None:
            bias = bias + attn.rel.b[delta.clamp(0, attn.rel.max_offset)]
        bias = bias.masked_fill(delta < 0, float("-inf"))
        if bias.dim() == 2:
            bias = bias.expand(q.shape[0], *bias.shape)
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=attn.scale)
        return torch.softmax(scores, dim=-1) @ v

    def _foldable(self) -> bool:
        """Whether E (and P) are constants, so products with them can be tabled."""
        return not self.W_E.requires_grad and not (self.absolute and self.W_pos.requires_grad)

    def _table(self, tokens: torch.Tensor,
               W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(index, table) with h⁰ Wᵀ = table[index] for frozen E (and P), or None when the
        table of every (token, position) sum would outgrow the batch."""
        B, T = tokens.shape
        if not self.absolute:
            return tokens, self.W_E @ W.T  # its backward is an index_add
        if len(self.W_E) > B:
            return None
        EW = self.W_E @ W.T
        # one table of every (token, position) sum: the broadcast add's backward would reduce
        # a [B, T, d] gradient over the batch (~7% of a Birth step); the table's is an index_add
        table = (EW[:, None] + (self.W_pos[:T] @ W.T)[None]).flatten(0, 1)  # [N T, d]
        return tokens * T + torch.arange(T, device=tokens.device), table

    def _project(self, tokens: torch.Tensor, h: torch.Tensor, W: torch.Tensor,
                 fold: bool) -> torch.Tensor:
        """h @ Wᵀ for h = h⁰; folded: (E Wᵀ)[z] (+ (P Wᵀ)[t]), the same sum reassociated."""
        if not fold:
            return h @ W.T
        lookup = self._table(tokens, W)
        if lookup is not None:
            return F.embedding(*lookup)
        T = tokens.shape[1]  # a [N T, d] table would outgrow the batch: add the broadcast
        return F.embedding(tokens, self.W_E @ W.T) + self.W_pos[:T] @ W.T


@torch.no_grad()
def reference_construction(model: TwoLayerModel, bigram: torch.Tensor,
                           keys: torch.Tensor | None = None, T: int = 256,
                           margins: tuple[float, float, float] = (20.0, 20.0, 100.0)) -> None:
    """Write the hand-built memories of Birth into `model` (in place; two layers, absolute P).

        W_K¹ ∝ Σ_t P[t] P[t−1]ᵀ                    previous-token head, t < T
        W_K² ∝ Σ_{k∈keys} E[k] w_1(k)ᵀ,  w_1 = W_O¹W_V¹E   induction keys (all tokens by default)
        W_O² ∝ Σ_j w_U(j) w_2(j)ᵀ,        w_2 = W_V²E      output memory
        W_F  = Σ_{i,j} ℓ_ij w̃_U(j) Ẽ[i]ᵀ, ℓ = centred log(π_b + 1e-6)  global bigram
               (w̃_U, Ẽ: dual bases, i.e. pseudo-inverses, so the FFN path is exactly ℓ)

    Each memory is scaled so that its matching score (or logit) is `margins` on average, which
    sharpens the softmaxes: W_K¹ and W_K² get margins[0], margins[1] (scores after 1/√d),
    W_O² gets margins[2] (logit of the copied token). Crosstalk between the random
    embeddings limits accuracy: we measured acc_end 0.91 at d = 256 and 0.99 at d = 512.
    """
    require(model.cfg.n_layers == 2 and model.absolute, "model",
            "the reference construction needs two layers and an absolute positional table")
    E, P, W_U = model.W_E, model.W_pos[:T], model.W_U  # [N, d], [T, d], [d, N]
    a1, a2 = model.blocks[0].attn, model.blocks[1].attn
    keys = torch.arange(E.shape[0], device=E.device) if keys is None else keys.to(E.device)
    # previous-token head
    W = P[1:].T @ P[:-1]  # Σ_t P[t] P[t-1]ᵀ, [d, d]
    match = (P[1:] @ W * P[:-1]).sum(1).mean() * a1.scale
    a1.W_K.copy_(W * margins[0] / match)
    # induction keys
    w1 = E @ a1.W_V.T @ a1.W_O.T  # rows w_1(k) = W_O¹ W_V¹ E[k], [N, d]
    W = E[keys].T @ w1[keys]
    match = (E[keys] @ W * w1[keys]).sum(1).mean() * a2.scale
    a2.W_K.copy_(W * margins[1] / match)
    # output memory
    w2 = E @ a2.W_V.T  # rows w_2(j), [N, d]
    W = W_U @ w2  # Σ_j w_U(j) w_2(j)ᵀ, [d, d]
    match = ((w2 @ W.T) * W_U.T).sum(1).mean()
    a2.W_O.copy_(W * margins[2] / match)
    # global bigram in the final linear FFN, with dual bases so that W_Uᵀ W_F E[i] = ℓ_i
    # exactly (N <= d); the plain outer-product sum leaves crosstalk of the size of ℓ itself
    ffn = model.blocks[1].mlp
    if ffn is not None and ffn.kind == "linear":
        ell = torch.log(bigram.to(E) + 1e-6)
        ell = ell - ell.mean(1, keepdim=True)  # [N(i), N(j)]
        ffn.W_F.copy_(torch.linalg.pinv(W_U.T) @ ell.T @ torch.linalg.pinv(E.T))
