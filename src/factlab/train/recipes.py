"""Training recipes shared by several claims (arXiv 2412.06538): Task A on the one-layer
transformer (the one place it is trained), the sequential-learning run of the linear-attention
model (all seeds stacked), and one associative memory trained full-batch on n associations.

Task A memorises a fixed knowledge base, so validation and test are both fresh prompts over the
same facts; they are independent draws (different generators), and early stopping and the best
checkpoint read validation only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from factlab.analysis.stats import still_improving
from factlab.knowledge import KnowledgeBase, make_knowledge_base
from factlab.models.linear_attention import LinearAttentionRecall
from factlab.models.memories import LinearMemory, MLPMemory
from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
from factlab.probes.metrics import accuracy, correct, forward_chunks, relation_only, subject_only
from factlab.runtime import make_generator
from factlab.tasks.factual_recall import RecallTaskConfig, sample_task
from factlab.train.ensemble import Ensemble, train_ensemble
from factlab.train.loop import TrainConfig, TrainResult, train


def build_knowledge_base(task: RecallTaskConfig) -> KnowledgeBase:
    """The knowledge base a task config describes."""
    return make_knowledge_base(task.n_subjects, task.n_relations, task.n_answers,
                               task.kb_seed, task.kb_kind)


def train_factual_recall(
    task: RecallTaskConfig, model_cfg: OneLayerConfig, train_cfg: TrainConfig, seed: int,
    device: torch.device | str = "cpu", n_test: int = 1024,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    show_progress: bool = False, kb: KnowledgeBase | None = None, n_val: int | None = None,
) -> tuple[OneLayerTransformer, TrainResult]:
    """Train a fresh one-layer model on Task A; return (model at its best checkpoint, result).

    `seed` fixes the model init (generator `seed`), the training batches (`seed + 1`), the
    validation prompts (`seed + 2`, `n_val`, default `n_test`) and the test prompts
    (`seed + 3`). Evaluations (`on_eval` sees them: "loss", "acc") are on validation; early
    stop at `train_cfg.target_acc` and the best checkpoint (highest validation accuracy, the
    earliest on ties, as `train` keeps it) read it. The returned model holds the best
    checkpoint's weights, and `result.best_eval` adds "test_loss" and "test_acc" measured there.
    The knowledge base comes from `task.kb_seed` unless `kb` is given.
    """
    kb = kb if kb is not None else build_knowledge_base(task)
    model = OneLayerTransformer(model_cfg, task.vocab_size, kb.n_outputs,
                                make_generator(seed)).to(device)
    batches = make_generator(seed + 1)
    val = sample_task(kb, task, n_val or n_test, make_generator(seed + 2), device)
    test = sample_task(kb, task, n_test, make_generator(seed + 3), device)

    def loss_fn(step: int) -> torch.Tensor:
        batch = sample_task(kb, task, train_cfg.batch_size, batches, device)
        return F.cross_entropy(model(batch.tokens), batch.answer)

    def metrics(split: Any) -> dict[str, float]:
        logits = forward_chunks(model, split.tokens)
        return {"loss": F.cross_entropy(logits, split.answer).item(),
                "acc": accuracy(logits, split.answer)}

    best: dict[str, Any] = {"acc": -1.0}

    def keep_best(step: int, m: dict[str, float]) -> None:
        if m.get("acc", -1.0) > best["acc"]:  # the rule `train` uses for best_eval
            best.update(acc=m["acc"], state={k: v.detach().clone()
                                             for k, v in model.state_dict().items()},
                        test={f"test_{k}": v for k, v in metrics(test).items()})
        if on_eval is not None:
            on_eval(step, m)

    result = train(model.parameters(), loss_fn, train_cfg, lambda: metrics(val),
                   on_eval=keep_best, show_progress=show_progress, desc="factual recall")
    if "state" in best:
        model.load_state_dict(best["state"])
        result.best_eval.update(best["test"])
    return model, result


def starved(result: TrainResult, curve: Sequence[tuple[int, float]], target: float) -> bool:
    """A run that ended on its step budget short of `target` while its metric still rose
    (`analysis.stats.still_improving` on the (step, value) `curve` of its evaluations)."""
    if result.stop_reason != "steps" or not curve:
        return False
    steps, values = zip(*curve)
    return still_improving(steps, values, target)


# ------------------------------------------------------------ sequential learning (§4.3 model)

def train_sequential(
    task: RecallTaskConfig, init: float, train_cfg: TrainConfig, seeds: Sequence[int],
    n_test: int, device: torch.device | str = "cpu",
    on_eval: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[Ensemble, list[TrainResult]]:
    """The linear-attention model trained on Task A for every seed at once (stacked members).

    Member i draws its training batches from generator `seeds[i]` and its fixed test prompts
    from `seeds[i] + 1`; the init is deterministic (A = V = init). Plain SGD on the summed
    member losses steps each member exactly as its own run would (elementwise optimiser,
    separate parameters). The model runs its "counts" forward (the same sum, regrouped).
    `on_eval(member, step, metrics)` sees total/relation/subject loss
    and accuracy on the member's test prompts at every evaluation.
    """
    kb = build_knowledge_base(task)
    structured = task.kb_kind == "structured"
    models = [LinearAttentionRecall(task.vocab_size, kb.n_outputs, init, path="counts")
              .to(device) for _ in seeds]
    stack = Ensemble(models)
    gens = [make_generator(s) for s in seeds]
    tests = [sample_task(kb, task, n_test, make_generator(s + 1), device) for s in seeds]
    test_tokens = torch.stack([t.tokens for t in tests])

    def loss_fn(step: int) -> torch.Tensor:
        batches = [sample_task(kb, task, train_cfg.batch_size, g, device) for g in gens]
        logits = stack(torch.stack([b.tokens for b in batches]), in_dims=(0,))  # [N, B, O]
        answers = torch.stack([b.answer for b in batches])
        return F.cross_entropy(logits.transpose(1, 2), answers, reduction="none").mean(1)

    @torch.no_grad()
    def eval_fn() -> dict[str, torch.Tensor]:
        logits = stack(test_tokens, in_dims=(0,))
        rows = []
        for lg, t in zip(logits, tests):
            rows.append({"loss": F.cross_entropy(lg, t.answer).item(),
                         "acc": correct(lg, t.answer).float().mean().item(),
                         **relation_only(lg, t.answer, kb),
                         **subject_only(lg, t.answer, t.subject, kb, structured)})
        return {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}

    results = train_ensemble(stack.trainable(), loss_fn, train_cfg, eval_fn, on_eval)
    return stack, results


# ------------------------------------------------------------ associative-memory capacity

def make_targets(n: int, cfg: Any) -> tuple[torch.Tensor, int]:
    """(f*(x) for x in [n], number of outputs M)."""
    if cfg.target == "identity":
        return torch.arange(n), n
    return (torch.arange(n) * cfg.n_bins) // n, cfg.n_bins


def make_memory(kind: str, n: int, d: int, width: int, seed: int, cfg: Any) -> torch.nn.Module:
    """A fresh linear or MLP memory over n inputs, its embeddings and init from `seed`."""
    gen = make_generator(seed)
    _, n_out = make_targets(n, cfg)
    if kind == "linear":
        return LinearMemory(n, n_out, d, gen)
    return MLPMemory(n, n_out, d, width, gen)


@dataclasses.dataclass
class MemoryProbe:
    """One trained memory: best accuracy over its n associations, steps, why it stopped, and
    whether it was starved (ended on its budget short of the threshold while still rising)."""

    acc: float
    steps: int
    stop_reason: str
    starved: bool


def train_memory_probe(kind: str, n: int, d: int, width: int, lr: float, seed: int,
                       cfg: Any, device: torch.device) -> MemoryProbe:
    """Train one memory full-batch on all n associations (stop at `cfg.threshold`).

    A memorisation probe: the set it is judged on is its training set, by definition.
    """
    model = make_memory(kind, n, d, width, seed, cfg).to(device)
    targets, _ = make_targets(n, cfg)
    x, y = torch.arange(n, device=device), targets.to(device)
    curve: list[tuple[int, float]] = []

    def loss_fn(step: int) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def eval_fn() -> dict[str, float]:
        return {"acc": accuracy(model(x), y)}

    tcfg = dataclasses.replace(cfg.train, lr=lr, target_acc=cfg.threshold)
    result = train(model.parameters(), loss_fn, tcfg, eval_fn, show_progress=False,
                   on_eval=lambda step, m: curve.append((step, m["acc"])))
    return MemoryProbe(result.best_eval.get("acc", 0.0), result.steps, result.stop_reason,
                       starved(result, curve, cfg.threshold))


def train_memory(kind: str, n: int, d: int, width: int, lr: float, seed: int,
                 cfg: Any, device: torch.device) -> tuple[float, int]:
    """`train_memory_probe` as (best accuracy, steps)."""
    probe = train_memory_probe(kind, n, d, width, lr, seed, cfg, device)
    return probe.acc, probe.steps
