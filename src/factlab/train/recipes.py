"""Training recipes shared by several claims: Task A on the one-layer transformer, and one
associative memory trained full-batch on n associations (arXiv 2412.06538).

Shared by the trade-off experiment and by anything that needs a model that has stored a
knowledge base (e.g. a pretrained MLP memory). Fresh prompts every step; a fixed test set of
fresh prompts over the same facts measures memorisation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from factlab.knowledge import KnowledgeBase, make_knowledge_base
from factlab.models.memories import LinearMemory, MLPMemory
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.probes.metrics import accuracy
from factlab.runtime import make_generator
from factlab.tasks.factual_recall import RecallTaskConfig, sample_factual_recall
from factlab.train.loop import TrainConfig, TrainResult, train


def build_knowledge_base(task: RecallTaskConfig) -> KnowledgeBase:
    """The knowledge base a task config describes."""
    return make_knowledge_base(task.n_subjects, task.n_relations, task.n_answers,
                               task.kb_seed, task.kb_kind)


def train_factual_recall(
    task: RecallTaskConfig, model_cfg: OneLayerConfig, train_cfg: TrainConfig, seed: int,
    device: torch.device | str = "cpu", n_test: int = 1024,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    show_progress: bool = False, kb: KnowledgeBase | None = None,
) -> tuple[OneLayerTransformer, TrainResult]:
    """Train a fresh one-layer model on Task A; return (model, result).

    `seed` fixes the model init, the training batches and the test prompts (three derived
    generators), so the run is reproducible; the knowledge base comes from `task.kb_seed`.
    """
    kb = kb if kb is not None else build_knowledge_base(task)
    model = OneLayerTransformer(model_cfg, task.vocab_size, kb.n_outputs,
                                make_generator(seed)).to(device)
    args = dict(seq_len=task.seq_len, n_noise=task.noise, eos=task.eos,
                subject_zipf=task.subject_zipf, relation_zipf=task.relation_zipf, device=device)
    batches = make_generator(seed + 1)
    test_tokens, test_answer, _, _ = sample_factual_recall(kb, n_test, make_generator(seed + 2),
                                                           **args)

    def loss_fn(step: int) -> torch.Tensor:
        tokens, answer, _, _ = sample_factual_recall(kb, train_cfg.batch_size, batches, **args)
        return F.cross_entropy(model(tokens), answer)

    @torch.no_grad()
    def eval_fn() -> dict[str, float]:
        logits = model(test_tokens)
        return {"loss": F.cross_entropy(logits, test_answer).item(),
                "acc": accuracy(logits, test_answer)}

    result = train(model.parameters(), loss_fn, train_cfg, eval_fn, on_eval=on_eval,
                   show_progress=show_progress, desc="factual recall")
    return model, result


# ------------------------------------------------------------ associative-memory capacity

def make_targets(n: int, cfg: Any) -> tuple[torch.Tensor, int]:
    """(f*(x) for x in [n], number of outputs M)."""
    if cfg.target == "identity":
        return torch.arange(n), n
    return (torch.arange(n) * cfg.n_bins) // n, cfg.n_bins


def train_memory(kind: str, n: int, d: int, width: int, lr: float, seed: int,
                 cfg: Any, device: torch.device) -> tuple[float, int]:
    """Train one memory full-batch on all n associations; return (best accuracy, steps)."""
    gen = make_generator(seed)
    targets, n_out = make_targets(n, cfg)
    if kind == "linear":
        model = LinearMemory(n, n_out, d, gen)
    else:
        model = MLPMemory(n, n_out, d, width, gen)
    model = model.to(device)
    x, y = torch.arange(n, device=device), targets.to(device)

    def loss_fn(step: int) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def eval_fn() -> dict[str, float]:
        return {"acc": (model(x).argmax(-1) == y).float().mean().item()}

    tcfg = dataclasses.replace(cfg.train, lr=lr, target_acc=cfg.threshold)
    result = train(model.parameters(), loss_fn, tcfg, eval_fn, show_progress=False)
    return result.best_eval.get("acc", 0.0), result.steps
