"""Frozen MLP associative memories for IC-recall (specs/ic_recall.md §5).

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
M3  `ReLUMemory` taken from a one-layer model pretrained on Task A (`pretrain_memory`), or loaded
    from an earlier run's safetensors checkpoint (`load_pretrained`).

Memories hold buffers, not parameters, so fine-tuning cannot move them; the control of the
sample-complexity experiment uses `TripletMemory(learn_values=True)`, whose output rows are a
trainable [SR, d] table that starts at zero, i.e. the same keys but no stored facts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from factlab.config import ConfigError, require
from factlab.knowledge import KnowledgeBase
from factlab.models.hooks import HookPoint
from factlab.models.memories import unit_embeddings
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.runtime import make_generator
from factlab.tasks.factual_recall import sample_factual_recall
from factlab.tasks.ic_recall import ICTaskConfig, ICVocab, all_triplets, sample_ic_recall
from factlab.train.loop import TrainConfig, train


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

    Pre-activations (spec §5): correct unit gamma + k beta; nearest rivals gamma (same subject,
    other relation) and beta + k beta (a context subject, same relation). tau sits at
    `tau_frac` of the way from the larger rival to the correct unit (0.5: midway, as in the
    spec), lam makes the correct unit output `margin_nats` nats.
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


class TripletMemory(FrozenMemory):
    """M1: one ReLU unit per (s, r) with key phi(s) + kappa_r, threshold tau, value lam psi(a*).

    d_mlp = S R; unit (s, r) has flat index s R + r in the hooks. Without hooks attached, only
    the `top_subjects` subjects with the largest <phi(s), u> are expanded; the result is exact
    (checked per call, else the dense path runs) because every other unit has a negative
    pre-activation. `learn_values=True` replaces the stored values by a trainable table
    V [S R, R D] (zero init) read out through psi: the control that must learn the facts.
    """

    def __init__(self, subject_emb: torch.Tensor, keys: torch.Tensor, kb: KnowledgeBase,
                 W_U: torch.Tensor, tau: float, lam: float, learn_values: bool = False,
                 top_subjects: int = 64):
        super().__init__()
        S, R = kb.n_subjects, kb.n_relations
        self.d_mlp, self.tau, self.lam = S * R, float(tau), float(lam)
        self.n_rel, self.top = R, min(S, top_subjects)
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
        if self.top < self.phi_s.shape[0] and not self._hooked():
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
        h = self.hook_post(torch.relu(self.hook_pre(u @ self.W_in + self.b_in)))
        return h @ self.W_out


def ideal_inputs(batch: dict[str, torch.Tensor], W_E: torch.Tensor, voc: ICVocab,
                 gamma: float, kbeta: float, key: str = "b") -> torch.Tensor:
    """The attention output of the target pattern: gamma phi(s_q) + beta sum_i (phi(s_i) + v_i).

    v_i = phi(a_i) for key (b) (W_OV = I) and phi(r) for key (a) (the ideal W_OV maps each
    answer to its relation). Returns [B, d] on W_E's device.
    """
    dev = W_E.device
    subj = batch["subjects"].to(dev)
    k = subj.shape[1] - 1
    beta = kbeta / k
    if key == "a":
        v = W_E[voc.relation(batch["relation"].to(dev))][:, None, :].expand(-1, k, -1)
    else:
        v = W_E[voc.answer(batch["context_answers"].to(dev))]
    return gamma * W_E[subj[:, -1]] + beta * (W_E[subj[:, :-1]] + v).sum(1)


@torch.no_grad()
def oracle_accuracy(memory: FrozenMemory, W_E: torch.Tensor, W_U: torch.Tensor,
                    kb: KnowledgeBase, task: ICTaskConfig, gamma: float, kbeta: float,
                    key: str, gen: torch.Generator, limit: int = 1 << 15, chunk: int = 2048
                    ) -> float:
    """Accuracy of y = x + F(x) on the ideal input x of every triplet (one random context each).

    Enumerates all SR triplets when SR <= `limit`, else samples `limit`; evaluated in chunks.
    """

    s, r = all_triplets(kb, limit, gen)
    correct = 0
    for start in range(0, len(s), chunk):
        batch = sample_ic_recall(kb, task, 0, gen, s[start:start + chunk], r[start:start + chunk])
        x = ideal_inputs(batch, W_E, task.vocab, gamma, kbeta, key)
        logits = (x + memory(x)) @ W_U
        correct += (logits.argmax(-1).cpu() == batch["answer"]).sum().item()
    return correct / len(s)


def random_feature_memory(d: int, width: int, W_E: torch.Tensor, W_U: torch.Tensor,
                          kb: KnowledgeBase, task: ICTaskConfig, gamma: float, kbeta: float,
                          gen: torch.Generator, steps: int = 2000, lr: float = 1e-2,
                          batch: int = 512) -> ReLUMemory:
    """M2: W_in columns uniform on the sphere (no bias), W_out fitted by cross-entropy.

    The fit sees ideal attention outputs (key b) of fresh random prompts, so the memory is
    robust to the context it will meet; W_in never moves.
    """

    W_in = unit_embeddings(width, d, gen).T.to(W_E.device)  # [d, m]
    W_out = nn.Parameter(torch.zeros(width, d, device=W_E.device))
    mem = ReLUMemory(W_in, torch.zeros(width, device=W_E.device), W_out.detach())
    mem.W_out = W_out

    def loss_fn(step: int) -> torch.Tensor:
        b = sample_ic_recall(kb, task, batch, gen)
        x = ideal_inputs(b, W_E, task.vocab, gamma, kbeta, "b")
        return F.cross_entropy((x + mem(x)) @ W_U, b["answer"].to(W_E.device))

    train([W_out], loss_fn, TrainConfig(optimizer="adam", lr=lr, steps=steps,
                                         eval_every=steps), show_progress=False)
    W_out.requires_grad_(False)
    return mem


# --------------------------------------------------------------------------------------------
# M3: pretrained on Task A


@dataclasses.dataclass
class PretrainConfig:
    """Task A pretraining of the memory (spec §5 M3, §8.8): W_V = W_O = I frozen, H = 1."""

    d_mlp: int = 512
    seq_len: int = 32  # T of Task A
    n_noise: int = -1  # -1: S + R as in 2412
    steps: int = 4096
    lr: float = 3e-3
    batch_size: int = 1024
    eval_every: int = 128
    target_acc: float = 0.99

    def check(self) -> None:
        require(self.d_mlp >= 1, "d_mlp", f"must be >= 1, got {self.d_mlp}")
        require(self.seq_len >= 3, "seq_len", f"must be >= 3, got {self.seq_len}")
        require(self.n_noise >= -1, "n_noise", "must be >= 0 (or -1 for S + R)")
        require(self.steps >= 1, "steps", "must be >= 1")
        require(self.lr > 0, "lr", "must be > 0")
        require(0 < self.target_acc <= 1, "target_acc", "must be in (0, 1]")


def pretrain_memory(kb: KnowledgeBase, d: int, cfg: PretrainConfig, seed: int,
                    device: torch.device, on_eval=None, show_progress: bool = False
                    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Train a one-layer model on Task A over the unified vocabulary; return its tensors.

    Returns ({"W_E", "W_U", "W_in", "b_in", "W_out"}, best eval metrics). W_V = W_O = I are
    frozen so attention outputs a convex mix of embeddings and the facts must sit in the MLP.
    The best evaluation's weights are kept (spec §6: report the best checkpoint).
    """

    S, R, D = kb.n_subjects, kb.n_relations, kb.n_answers_per_relation
    n_noise = S + R if cfg.n_noise < 0 else cfg.n_noise
    voc = ICVocab(S, R, D, n_noise)
    gen = make_generator(seed)
    model = OneLayerTransformer(OneLayerConfig(d_model=d, n_heads=1, d_head=d, d_mlp=cfg.d_mlp),
                                voc.size, kb.n_outputs, gen).to(device)
    attn = model.blocks[0].attn
    with torch.no_grad():
        model.W_E.copy_(unit_embeddings(voc.size, d, gen))
        model.W_U.copy_(unit_embeddings(kb.n_outputs, d, gen).T)
        attn.W_V.copy_(torch.eye(d)[None])
        attn.W_O.copy_(torch.eye(d)[None])
    attn.W_V.requires_grad_(False)
    attn.W_O.requires_grad_(False)
    test = sample_factual_recall(kb, 1024, make_generator(seed + 1), cfg.seq_len, n_noise)
    test_tokens, test_y = voc.from_recall(test[0]).to(device), test[1].to(device)

    def loss_fn(step: int) -> torch.Tensor:
        tok, y, _, _ = sample_factual_recall(kb, cfg.batch_size, gen, cfg.seq_len, n_noise)
        return F.cross_entropy(model(voc.from_recall(tok).to(device)), y.to(device))

    best: dict = {"acc": -1.0}

    @torch.no_grad()
    def eval_fn() -> dict[str, float]:
        logits = model(test_tokens)
        acc = (logits.argmax(-1) == test_y).float().mean().item()
        if acc > best["acc"]:
            best.update(acc=acc, state={n: p.detach().clone() for n, p in
                                        model.named_parameters()})
        return {"acc": acc, "loss": F.cross_entropy(logits, test_y).item()}

    tcfg = TrainConfig(optimizer="adamw", lr=cfg.lr, steps=cfg.steps, batch_size=cfg.batch_size,
                       eval_every=cfg.eval_every, target_acc=cfg.target_acc)
    result = train(model.parameters(), loss_fn, tcfg, eval_fn, on_eval,
                   show_progress=show_progress, desc="pretrain")
    st = best["state"]
    tensors = {"W_E": st["W_E"], "W_U": st["W_U"], "W_in": st["blocks.0.mlp.W_in"],
               "b_in": st["blocks.0.mlp.b_in"], "W_out": st["blocks.0.mlp.W_out"]}
    metrics = {"pretrain_acc": best["acc"], "pretrain_steps": result.steps,
               "n_noise": n_noise}
    return tensors, metrics


def load_pretrained(path: str | Path, kb: KnowledgeBase, d: int) -> dict[str, torch.Tensor]:
    """Load M3 tensors from a run directory (its pretrained_memory.safetensors) or a file.

    Refuses, as a one-line `ConfigError`, a missing file or shapes that do not fit (S, R, D, d).
    """
    from safetensors.torch import load_file

    p = Path(path)
    if p.is_dir():
        p = p / "pretrained_memory.safetensors"
    require(p.is_file(), "memory.pretrained_from", f"no checkpoint at {str(p)!r}")
    t = load_file(str(p))
    need = {"W_E", "W_U", "W_in", "b_in", "W_out"}
    require(need <= set(t), "memory.pretrained_from",
            f"{p.name} lacks tensors {sorted(need - set(t))}")
    require(t["W_U"].shape == (d, kb.n_outputs) and t["W_E"].shape[0] >= voc_min(kb),
            "memory.pretrained_from",
            f"checkpoint shapes W_E {tuple(t['W_E'].shape)}, W_U {tuple(t['W_U'].shape)} do "
            f"not fit S={kb.n_subjects}, R={kb.n_relations}, D={kb.n_answers_per_relation}, d={d}")
    return t


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
    """Frozen unit-norm embeddings W_E [V, d] and unembeddings W_U [d, RD] (spec §5)."""
    return unit_embeddings(voc.size, d, gen), unit_embeddings(n_outputs, d, gen).T.contiguous()


__all__ = ["FrozenMemory", "TripletMemory", "ReLUMemory", "calibrate", "relation_keys",
           "ideal_inputs", "oracle_accuracy", "random_feature_memory", "PretrainConfig",
           "pretrain_memory", "load_pretrained", "build_triplet_memory", "embedding_tables"]
