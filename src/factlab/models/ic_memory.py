"""Frozen MLP associative memories for IC-recall (arXiv 2605.27774; our reconstruction).

Every memory maps the attention output u [..., d] to a d-vector F(u) that the model adds to u
before the frozen unembedding (y = u + F(u), logits = y W_U). Three constructions:

M1  `TripletMemory`: one ReLU unit per triplet (width m = SR),

        F(u) = sum_{s,r} lam * psi(a*(s,r)) * ReLU(<phi(s) + kappa_r, u> - tau)

    with relation key (a) kappa_r = phi(r) or (b) kappa_r = sum_{a in A_r} phi(a). The
    pre-activation of unit (s, r) is <phi(s), u> + <kappa_r, u>, an outer *sum* of an [S] and an
    [R] vector, and all units of one answer share an output row, so the forward pass costs
    O(B (S + R) d + B S R) instead of O(B S R d); this is what lets the sweep reach 2^16 triplets.
M2  `ReLUMemory` with random features: W_in columns uniform on the sphere, W_out fitted by
    cross-entropy (W_in fixed) on ideal attention outputs of random prompts.
M3  `ReLUMemory` taken from a one-layer model pretrained on Task A.

This module is pure: the fitting of M2, the pretraining of M3 and checkpoint I/O live in
`factlab.pipelines.ic_memories`; the oracle check in `factlab.probes.ic_recall`.

Memories hold buffers, not parameters, so fine-tuning cannot move them; the control of the
sample-complexity experiment uses `TripletMemory(learn_values=True)`, whose output rows are a
trainable [SR, d] table that starts at zero, i.e. the same keys but no stored facts.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from factlab.config import ConfigError
from factlab.knowledge import KnowledgeBase
from factlab.models.hooks import HookPoint
from factlab.models.memories import unit_embeddings
from factlab.tasks.ic_recall import ICTaskConfig, ICVocab


class FrozenMemory(nn.Module):
    """Interface: u [..., d] -> F(u) [..., d]; hooks `hook_pre`, `hook_post` [..., d_mlp]."""

    d_mlp: int

    def __init__(self) -> None:
        super().__init__()
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()


# --------------------------------------------------------------------------------------------
# M1: constructed per-triplet memory


def calibrate(gamma: float, kbeta: float, k: int, margin_nats: float = 8.0,
              tau_frac: float = 0.5) -> tuple[float, float]:
    """(tau, lam) of M1 for a target pattern: weight gamma on s_q, beta = kbeta / k per token.

    Pre-activations: correct unit gamma + k beta; nearest rivals gamma (same subject, other
    relation) and beta + k beta (a context subject, same relation). tau sits at `tau_frac` of
    the way from the larger rival to the correct unit (0.5: midway); lam makes the correct
    unit output `margin_nats` nats.
    """
    beta = kbeta / k
    top, rival = gamma + kbeta, max(gamma, beta + kbeta)
    if top <= rival:
        raise ConfigError(f"memory.gamma: the target pattern cannot discriminate "
                          f"(gamma={gamma:g} must exceed beta={beta:g}, and kbeta > 0)")
    tau = rival + tau_frac * (top - rival)
    return tau, margin_nats / (top - tau)


def relation_keys(key: Literal["a", "b"], W_E: torch.Tensor, kb: KnowledgeBase,
                  voc: ICVocab, answer_sets: str = "disjoint") -> torch.Tensor:
    """kappa [R, d]: phi(r) (key a) or the sum of phi(a) over the answers of relation r (key b).

    For the shared pool the answer set of r is the set of answers r actually uses.
    """
    R, D = kb.n_relations, kb.n_answers_per_relation
    if key == "a":
        return W_E[voc.relation(torch.arange(R))].clone()
    member = torch.zeros(R, kb.n_outputs)
    if answer_sets == "disjoint":
        member[torch.arange(R).repeat_interleave(D), torch.arange(R * D)] = 1.0
    else:
        member[torch.arange(R)[None, :].expand_as(kb.answers), kb.answers] = 1.0
    return member @ W_E[voc.answer(torch.arange(kb.n_outputs))]


# The sparse path's gather of K subject rows per prompt costs more than all S units until S is
# large: a training step at d = 512, R = 8, K = 64 took (sparse / dense) 48 / 17 ms at S = 128,
# 55 / 23 at 512, 56 / 30 at 1024 and 45 / 70 at 2048 (one thread, the machine loaded). But
# the dense path's [chunk, S R] hidden layer makes the test enumeration slow: with dense at
# S = 1024, d = 256, the ic-recall-samples quick run took 575 s against 405 s. Hence 8 x K:
# dense up to S = 512, sparse from S = 1024
SPARSE_FROM = 8


class TripletMemory(FrozenMemory):
    """M1: one ReLU unit per (s, r) with key phi(s) + kappa_r, threshold tau, value lam psi(a*).

    d_mlp = S R; unit (s, r) has flat index s R + r in the hooks. Without hooks attached and
    with S > SPARSE_FROM * top_subjects, only the `top_subjects` subjects with the largest
    <phi(s), u> are expanded; the result is exact (checked per call, else the dense path runs)
    because every other unit has a negative pre-activation. `learn_values=True` replaces the
    stored values by a trainable table V [S R, R D] (zero init) read out through psi: the
    control that must learn the facts.
    """

    def __init__(self, subject_emb: torch.Tensor, keys: torch.Tensor, kb: KnowledgeBase,
                 W_U: torch.Tensor, tau: float, lam: float, learn_values: bool = False,
                 top_subjects: int = 64):
        super().__init__()
        S, R = kb.n_subjects, kb.n_relations
        self.d_mlp, self.tau, self.lam = S * R, float(tau), float(lam)
        self.n_rel, self.top = R, min(S, top_subjects)
        self.sparse = SPARSE_FROM * self.top < S
        self.register_buffer("phi_s", subject_emb.clone())  # [S, d]
        self.register_buffer("kappa", keys.clone())  # [R, d]
        self.register_buffer("unit_answer", kb.answers.reshape(-1).clone())  # [S R]
        self.register_buffer("psi", (lam * W_U.T).clone())  # [RD, d], the shared value rows
        self.values = (nn.Parameter(torch.zeros(S * R, kb.n_outputs)) if learn_values
                       else None)

    def _hooked(self) -> bool:
        return bool(self.hook_pre._fns or self.hook_post._fns)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u [..., d] -> [..., d]."""
        lead = u.shape[:-1]
        u2 = u.reshape(-1, u.shape[-1])  # [B, d]
        c = u2 @ self.kappa.T  # [B, R]  <kappa_r, u>
        if self.sparse and not self._hooked():
            with torch.no_grad():  # pick the subjects first; gradients flow through those only
                top = (u2 @ self.phi_s.T).topk(self.top + 1, dim=1)
            idx = top.indices[:, :-1]
            a_top = torch.einsum("bd,bkd->bk", u2, self.phi_s[idx])  # [B, K]
            out = self._sparse(a_top, idx, c)
            # exact iff no unexpanded unit can fire: (K+1)-th best subject + best relation <= tau
            bad = (top.values[:, -1] + c.max(1).values > self.tau).nonzero().squeeze(1)
            if len(bad):
                out = out.index_copy(0, bad, self._dense(u2[bad] @ self.phi_s.T, c[bad]))
            return out.reshape(*lead, -1)
        a = u2 @ self.phi_s.T  # [B, S]  <phi(s), u>
        pre = self.hook_pre((a[:, :, None] + c[:, None, :] - self.tau).reshape(*lead, self.d_mlp))
        h = self.hook_post(torch.relu(pre)).reshape(u2.shape[0], self.d_mlp)  # [B, S R]
        return self._readout(h).reshape(*lead, -1)

    def _dense(self, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """All S R units: a [B, S], c [B, R] -> [B, d]."""
        h = torch.relu(a[:, :, None] + c[:, None, :] - self.tau).reshape(a.shape[0], -1)
        return self._readout(h)

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden [B, S R] -> memory output [B, d]."""
        if self.values is not None:
            return h @ self.values @ self.psi
        # units that store the same answer share a value row: bin them, then one small matmul
        binned = torch.zeros(h.shape[0], self.psi.shape[0], dtype=h.dtype, device=h.device)
        binned = binned.scatter_add(1, self.unit_answer[None].expand(h.shape[0], -1), h)
        return binned @ self.psi

    def _sparse(self, a_top: torch.Tensor, s_top: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Units of the K selected subjects only: a_top, s_top [B, K], c [B, R] -> [B, d]."""
        B, K = a_top.shape
        h = torch.relu(a_top[:, :, None] + c[:, None, :] - self.tau).reshape(B, -1)  # [B, K R]
        units = (s_top[:, :, None] * self.n_rel
                 + torch.arange(self.n_rel, device=c.device)).reshape(B, -1)
        if self.values is not None:
            return torch.einsum("bu,bua->ba", h, self.values[units]) @ self.psi
        binned = torch.zeros(B, self.psi.shape[0], dtype=h.dtype, device=h.device)
        return binned.scatter_add(1, self.unit_answer[units], h) @ self.psi


# --------------------------------------------------------------------------------------------
# M2 / M3: a plain ReLU MLP held frozen


class ReLUMemory(FrozenMemory):
    """F(u) = ReLU(u W_in + b_in) W_out with frozen W_in [d, m], b_in [m], W_out [m, d]."""

    def __init__(self, W_in: torch.Tensor, b_in: torch.Tensor, W_out: torch.Tensor):
        super().__init__()
        self.d_mlp = W_in.shape[1]
        self.register_buffer("W_in", W_in.clone())
        self.register_buffer("b_in", b_in.clone())
        self.W_out = nn.Parameter(W_out.clone(), requires_grad=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u [..., d] -> ReLU(u W_in + b_in) W_out [..., d]."""
        h = self.hook_post(torch.relu(self.hook_pre(u @ self.W_in + self.b_in)))
        return h @ self.W_out


def voc_min(kb: KnowledgeBase) -> int:
    """Smallest unified vocabulary for `kb`: S + R + RD + EOS."""
    return kb.n_subjects + kb.n_relations + kb.n_outputs + 1


def build_triplet_memory(W_E: torch.Tensor, W_U: torch.Tensor, kb: KnowledgeBase,
                         task: ICTaskConfig, key: Literal["a", "b"], gamma: float, kbeta: float,
                         margin_nats: float = 8.0, learn_values: bool = False,
                         tau_frac: float = 0.5) -> TripletMemory:
    """M1 calibrated for the target pattern (gamma on s_q, kbeta in total on each role)."""
    tau, lam = calibrate(gamma, kbeta, task.k, margin_nats, tau_frac)
    keys = relation_keys(key, W_E, kb, task.vocab, task.answer_sets)
    return TripletMemory(W_E[: kb.n_subjects], keys, kb, W_U, tau, lam, learn_values)


def embedding_tables(voc: ICVocab, n_outputs: int, d: int, gen: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen unit-norm embeddings W_E [V, d] and unembeddings W_U [d, RD] (our reconstruction)."""
    return unit_embeddings(voc.size, d, gen), unit_embeddings(n_outputs, d, gen).T.contiguous()


__all__ = ["FrozenMemory", "TripletMemory", "ReLUMemory", "calibrate", "relation_keys",
           "build_triplet_memory", "embedding_tables", "voc_min"]
