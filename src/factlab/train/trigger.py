"""Training recipe of the trigger-bigram family (arXiv 2306.00802, 2412.11459).

One model (the simplified two-layer model or the standard transformer) trained on fresh
trigger-task batches every step. Three disjoint data streams, each from its own generator:
training batches (derived from the seed), the validation batch (seed 1) that the logged
probes read during training, and the test batch (seed 0) that verdicts read after training.
Nothing is selected on the test batch; the final checkpoint is the one judged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from factlab.models.standard import StandardConfig, StandardTransformer
from factlab.models.two_layer import TwoLayerConfig, TwoLayerModel
from factlab.runtime import derive_seed, make_generator
from factlab.tasks.bigram_stats import BigramStats, load_stats
from factlab.tasks.trigger_bigram import TriggerTaskConfig, sample_from_config
from factlab.train.loop import TrainConfig, TrainResult, train
from factlab.train.prefetch import prefetch

TEST_SEED = 0  # the fixed test batch (what verdicts read)
VAL_SEED = 1  # the validation batch (what the logged curves and starvation checks read)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # x [B,T], y [B,T], outs [B,T]


@dataclasses.dataclass
class TrainedModel:
    """A trained model with the statistics, fixed triggers and loop result of its run."""

    model: torch.nn.Module
    stats: BigramStats
    triggers: torch.Tensor | None  # fixed triggers, or None when random
    result: TrainResult | None = None


def task_stats(task: TriggerTaskConfig) -> BigramStats:
    """The bigram statistics a task config names."""
    return load_stats(None if task.stats == "shakespeare" else task.stats)


def task_triggers(stats: BigramStats, task: TriggerTaskConfig) -> torch.Tensor | None:
    """The fixed triggers of a task, or None when they are drawn per sequence."""
    if task.fixed_triggers and task.n_triggers > 0:
        return stats.top_tokens(task.n_triggers, task.trigger_offset)
    return None


def fixed_batch(stats: BigramStats, task: TriggerTaskConfig, n: int, seed: int,
                T: int | None = None, device: torch.device | str = "cpu") -> Batch:
    """`n` sequences drawn with `seed` (TEST_SEED or VAL_SEED) on the CPU, then moved."""
    x, y, outs = sample_from_config(stats, task, n, make_generator(seed), T=T)
    return x.to(device), y.to(device), outs.to(device)


def make_model(model_cfg: TwoLayerConfig | StandardConfig, n_vocab: int, seed: int,
               train_len: int) -> torch.nn.Module:
    """The model a config describes, initialised from `seed`."""
    gen = make_generator(seed)
    if isinstance(model_cfg, StandardConfig):
        return StandardTransformer(model_cfg, n_vocab, gen)
    return TwoLayerModel(model_cfg, n_vocab, gen, train_len=train_len)


def trigger_loss(logits: torch.Tensor, y: torch.Tensor, outs: torch.Tensor,
                 loss_on: str) -> torch.Tensor:
    """Cross-entropy on every position ("all") or on outs >= 2 only ("head", Birth's)."""
    if loss_on == "head":
        mask = outs >= 2
        return F.cross_entropy(logits[mask], y[mask]) if mask.any() else logits.sum() * 0
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


def train_trigger_model(
    model_cfg: TwoLayerConfig | StandardConfig, task: TriggerTaskConfig, train_cfg: TrainConfig,
    seed: int, device: torch.device | str = "cpu", loss_on: str = "all", eval_batch: int = 256,
    probe: Callable[[torch.nn.Module, Batch], dict[str, float]] | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    show_progress: bool = False, desc: str = "trigger",
) -> TrainedModel:
    """Train one model from `seed`; `probe(model, val_batch)` feeds `on_eval` every eval.

    The model's init and its training stream derive from `seed`; the validation batch is the
    same for every seed (VAL_SEED), so curves of different seeds are comparable.
    """
    stats = task_stats(task)
    T = task.seq_len
    model = make_model(model_cfg, stats.n, derive_seed(seed, "init"), T).to(device)
    triggers = task_triggers(stats, task)
    data_gen = make_generator(derive_seed(seed, "data"))
    val = fixed_batch(stats, task, eval_batch, VAL_SEED, device=device)

    batches = prefetch(lambda: sample_from_config(stats, task, train_cfg.batch_size, data_gen))
    # loss on outs >= 2 only: the two-layer model's named fast path computes the same logits
    # there with fewer FLOPs (equality of logits and gradients: tests/test_fast_paths.py)
    at_head = loss_on == "head" and isinstance(model, TwoLayerModel)

    def loss_fn(step: int) -> torch.Tensor:
        x, y, outs = (t.to(device) for t in next(batches))
        mask = outs >= 2
        if at_head and mask.any():
            return F.cross_entropy(model.logits_at(x, mask), y[mask])
        return trigger_loss(model(x), y, outs, loss_on)

    @torch.no_grad()
    def eval_fn() -> dict[str, Any]:
        model.eval()
        out = dict(probe(model, val)) if probe is not None else {}
        model.train()
        return out

    result = train(model.parameters(), loss_fn, dataclasses.replace(train_cfg, target_acc=0.0),
                   eval_fn, on_eval, show_progress=show_progress, desc=desc)
    result.raise_if_diverged()
    model.eval()
    return TrainedModel(model, stats, triggers, result)
