"""Train the one-layer transformer on Task A (factual recall among noise, arXiv 2412.06538).

Shared by the trade-off experiment and by anything that needs a model that has stored a
knowledge base (e.g. a pretrained MLP memory). Fresh prompts every step; a fixed test set of
fresh prompts over the same facts measures memorisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from factlab.knowledge import KnowledgeBase, make_knowledge_base
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.probes import accuracy
from factlab.runtime import make_generator
from factlab.tasks.recall import RecallTaskConfig, sample_factual_recall
from factlab.train import TrainConfig, TrainResult, train


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
