"""The IC-recall fixtures: knowledge base, frozen embeddings and the frozen memory (arXiv
2605.27774, our reconstruction), built once per size and shared by every fine-tuning run.

Holds what `factlab.models.ic_memory` must not (it is pure): fitting the random-feature memory
M2, pretraining M3 on Task A (arXiv 2412.06538's factual-recall task, same knowledge base), and
reading/writing M3 as safetensors. `build_setup` picks the memory named by a `MemoryConfig`
and runs the oracle check of a constructed one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from factlab.config import require
from factlab.knowledge import KnowledgeBase
from factlab.models.ic_memory import (
    FrozenMemory,
    ReLUMemory,
    build_triplet_memory,
    embedding_tables,
    voc_min,
)
from factlab.models.memories import unit_embeddings
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.probes.ic_recall import ideal_inputs, oracle_accuracy
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.factual_recall import sample_factual_recall
from factlab.tasks.ic_recall import ICTaskConfig, ICVocab, make_ic_knowledge_base, sample_ic_recall
from factlab.train.loop import TrainConfig, train


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


@dataclasses.dataclass
class PretrainConfig:
    """Task A pretraining of the memory (M3): W_V = W_O = I frozen, H = 1."""

    d_mlp: int = 512
    seq_len: int = 32  # T of Task A
    n_noise: int = -1  # -1: S + R as in 2412
    steps: int = 4096
    lr: float = 1e-3
    # tried in order instead of `lr`, stopping at the first that reaches target_acc (else the
    # best is kept): which lr escapes the relation plateau depends on the size (at S = 512,
    # d = 256, of 1e-3, 3e-3 and 1e-2 only 1e-3 does; at S = 128, d = 64 1e-2 is faster;
    # docs/ic_recall.md)
    lr_grid: tuple[float, ...] = ()
    batch_size: int = 1024
    eval_every: int = 128
    target_acc: float = 0.99

    def check(self) -> None:
        require(self.d_mlp >= 1, "d_mlp", f"must be >= 1, got {self.d_mlp}")
        require(self.seq_len >= 3, "seq_len", f"must be >= 3, got {self.seq_len}")
        require(self.n_noise >= -1, "n_noise", "must be >= 0 (or -1 for S + R)")
        require(self.steps >= 1, "steps", "must be >= 1")
        require(self.lr > 0 and all(lr > 0 for lr in self.lr_grid), "lr", "must be > 0")
        require(0 < self.target_acc <= 1, "target_acc", "must be in (0, 1]")


def pretrain_memory(kb: KnowledgeBase, d: int, cfg: PretrainConfig, seed: int,
                    device: torch.device,
                    on_eval: Callable[[int, dict[str, float]], None] | None = None,
                    show_progress: bool = False
                    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Train a one-layer model on Task A over the unified vocabulary; return its tensors.

    Returns ({"W_E", "W_U", "W_in", "b_in", "W_out"}, best eval metrics). W_V = W_O = I are
    frozen so attention outputs a convex mix of embeddings and the facts must sit in the MLP.
    The best evaluation's weights are kept (the best checkpoint, as in 2412's protocol). With
    `cfg.lr_grid`, each lr starts from the same initialisation, in order, until one reaches
    `cfg.target_acc`; the best Task-A accuracy over the lrs tried wins.
    """
    best: tuple[dict[str, torch.Tensor], dict[str, float]] | None = None
    for lr in cfg.lr_grid or (cfg.lr,):
        def log(step: int, m: dict[str, float], lr: float = lr) -> None:
            if on_eval is not None:
                on_eval(step, {**m, "lr": lr})
        out = _pretrain_at(kb, d, cfg, lr, seed, device, log, show_progress)
        if best is None or out[1]["pretrain_acc"] > best[1]["pretrain_acc"]:
            best = out
        if out[1]["pretrain_acc"] >= cfg.target_acc:
            break
    assert best is not None
    return best


def _pretrain_at(kb: KnowledgeBase, d: int, cfg: PretrainConfig, lr: float, seed: int,
                 device: torch.device, on_eval: Callable[[int, dict[str, float]], None],
                 show_progress: bool) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """One Task-A pretraining at learning rate `lr` (see `pretrain_memory`)."""

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

    tcfg = TrainConfig(optimizer="adamw", lr=lr, steps=cfg.steps, batch_size=cfg.batch_size,
                       eval_every=cfg.eval_every, target_acc=cfg.target_acc)
    result = train(model.parameters(), loss_fn, tcfg, eval_fn, on_eval,
                   show_progress=show_progress, desc="pretrain")
    st = best["state"]
    tensors = {"W_E": st["W_E"], "W_U": st["W_U"], "W_in": st["blocks.0.mlp.W_in"],
               "b_in": st["blocks.0.mlp.b_in"], "W_out": st["blocks.0.mlp.W_out"]}
    metrics = {"pretrain_acc": best["acc"], "pretrain_steps": result.steps,
               "pretrain_lr": lr, "n_noise": n_noise}
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


@dataclasses.dataclass
class MemoryConfig:
    """Which frozen memory sits in the MLP slot, and how it is built."""

    kind: Literal["constructed", "random_features", "pretrained"] = "constructed"
    key: Literal["a", "b"] = "b"  # M1 relation key: (a) phi(r), (b) sum of the block's phi(a)
    gamma: float = 1 / 3  # target weight on s_q that M1/M2 are calibrated for
    kbeta: float = 1 / 3  # target total weight on the context answers (and on the subjects)
    margin_nats: float = 8.0  # M1: logit of the correct unit at the target pattern
    rf_width: int = 4096  # M2 width m
    rf_steps: int = 1500  # M2: Adam steps fitting W_out
    pretrained_from: str = ""  # M3: run directory or .safetensors; empty = pretrain inline
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)

    def check(self) -> None:
        require(0 < self.gamma < 1, "gamma", f"must be in (0, 1), got {self.gamma}")
        require(0 < self.kbeta < 1 and self.gamma + 2 * self.kbeta <= 1 + 1e-9, "kbeta",
                "must be > 0 with gamma + 2 kbeta <= 1 (weights of a softmax)")
        require(self.margin_nats > 0, "margin_nats", "must be > 0")
        require(self.rf_width >= 1, "rf_width", "must be >= 1")
        require(self.rf_steps >= 1, "rf_steps", "must be >= 1")


@dataclasses.dataclass
class Setup:
    """Everything frozen that fine-tuning runs share: facts, embeddings, memory."""

    task: ICTaskConfig
    kb: KnowledgeBase
    W_E: torch.Tensor
    W_U: torch.Tensor
    memory: FrozenMemory
    info: dict[str, Any]


def build_setup(mc: MemoryConfig, task: ICTaskConfig, d: int, seed: int, device: torch.device,
                learn_values: bool = False, eval_limit: int = 1 << 15,
                on_pretrain_eval: Callable[[int, dict], None] | None = None,
                save: Callable[[str, dict, dict], Any] | None = None,
                show_progress: bool = False) -> Setup:
    """Knowledge base, frozen embeddings and the memory named by `mc` (on `device`).

    A pretrained memory is trained inline (logged through `on_pretrain_eval`, saved through
    `save(name, tensors, metadata)`) unless `mc.pretrained_from` names a checkpoint.
    """
    kb = make_ic_knowledge_base(task)
    gen = make_generator(derive_seed(seed, "embeddings", task.n_subjects))
    info: dict[str, Any] = {}
    if mc.kind == "pretrained":
        if mc.pretrained_from:
            t = load_pretrained(mc.pretrained_from, kb, d)
            info["pretrained_from"] = mc.pretrained_from
        else:
            t, pm = pretrain_memory(kb, d, mc.pretrain, derive_seed(seed, "pretrain"), device,
                                    on_pretrain_eval, show_progress)
            info.update(pm)
            if save is not None:
                save("pretrained_memory", t, {
                    "S": str(kb.n_subjects), "R": str(kb.n_relations),
                    "D": str(kb.n_answers_per_relation), "d": str(d),
                    "kb_seed": str(task.kb_seed)})
        # the pretrained table has Task A's noise rows between the answers and EOS; IC prompts
        # never use them, so drop them and keep EOS last (ICVocab with n_noise = 0)
        n_keep = task.vocab.eos
        W_E = torch.cat([t["W_E"][:n_keep], t["W_E"][-1:]]).to(device)
        W_U = t["W_U"].to(device)
        memory: FrozenMemory = ReLUMemory(t["W_in"], t["b_in"], t["W_out"]).to(device)
        return Setup(task, kb, W_E, W_U, memory, info)
    W_E, W_U = embedding_tables(task.vocab, kb.n_outputs, d, gen)
    W_E, W_U = W_E.to(device), W_U.to(device)
    if mc.kind == "random_features":
        memory = random_feature_memory(d, mc.rf_width, W_E, W_U, kb, task, mc.gamma, mc.kbeta,
                                       gen, steps=mc.rf_steps)
    else:
        memory = build_triplet_memory(W_E, W_U, kb, task, mc.key, mc.gamma, mc.kbeta,
                                      mc.margin_nats, learn_values).to(device)
        info.update(tau=memory.tau, lam=memory.lam)
    if not learn_values:
        ogen = make_generator(derive_seed(seed, "oracle", task.n_subjects))
        info["oracle_acc"] = oracle_accuracy(memory, W_E, W_U, kb, task, mc.gamma, mc.kbeta,
                                             mc.key, ogen, eval_limit)
    return Setup(task, kb, W_E, W_U, memory, info)


__all__ = ["MemoryConfig", "PretrainConfig", "Setup", "build_setup", "pretrain_memory",
           "load_pretrained", "random_feature_memory"]
