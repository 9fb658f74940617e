"""One training loop for every experiment.

`train` owns the optimizer, the learning-rate schedule, the evaluation cadence, early stopping
at a target metric and the divergence guard. What it trains on is given by two callables: a
`loss_fn(step) -> loss` that samples a batch and returns a scalar loss, and an optional
`eval_fn() -> dict` of metrics. Everything is seeded by the caller; the loop itself draws no
randomness, so a run is a pure function of its config.

The divergence guard lives here so that no experiment can skip it: a non-finite loss (or one
above `max_loss`), a non-finite gradient norm, or a non-finite evaluation metric raises
`DivergenceError` at once, naming the step and the learning rate to lower. The command line
turns it into one line and exit code 1, and the run directory gets no summary.json.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch

from factlab.config import allow_inf, require
from factlab.runtime import progress
from factlab.train.optim import SGD, Adam, Optimizer


@dataclasses.dataclass
class TrainConfig:
    """Optimizer, schedule, length, evaluation cadence and stopping rules."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_steps: int = 0  # linear warmup from 0, before any schedule
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    decay_every: int = 1000  # step schedule: multiply by decay_gamma every decay_every steps
    decay_at: tuple[float, ...] = ()  # ... or at these fractions of training (e.g. 0.5,0.75)
    decay_gamma: float = 0.1
    steps: int = 1000
    batch_size: int = 256
    eval_every: int = 100
    target_acc: float = 0.0  # stop once the eval metric "acc" reaches this; 0 = never
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    max_loss: float = allow_inf(1e4)  # a loss above this (or NaN/inf) stops the run; inf = off
    patience: int = 0  # stop after this many evaluations without improving `monitor`; 0 = off
    monitor: str = "loss"  # eval metric watched by `patience` (e.g. a validation loss)
    monitor_mode: Literal["min", "max"] = "min"
    min_delta: float = 0.0  # an improvement must beat the best by more than this

    def check(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.eval_every >= 1, "eval_every", f"must be >= 1, got {self.eval_every}")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1]")
        require(self.decay_every >= 1, "decay_every", "must be >= 1")
        require(0 < self.decay_gamma <= 1, "decay_gamma", "must be in (0, 1]")
        require(all(0 < f < 1 for f in self.decay_at), "decay_at",
                "every milestone must be a fraction of training in (0, 1)")
        require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(0 <= self.target_acc <= 1, "target_acc", "must be in [0, 1]")
        require(self.grad_clip >= 0, "grad_clip", "must be >= 0")
        require(self.max_loss > 0, "max_loss", f"must be > 0 (inf = never), got {self.max_loss}")
        require(self.patience >= 0, "patience", "must be >= 0 (0 = off)")
        require(self.min_delta >= 0, "min_delta", "must be >= 0")


class DivergenceError(RuntimeError):
    """Training produced a non-finite or exploding loss, gradient or metric.

    `step` is the optimizer step, `lr` the base learning rate of the stage that diverged (the
    command line names the config key holding it), `what` the quantity that went bad.
    """

    def __init__(self, step: int, what: str, lr: float):
        self.step, self.what, self.lr = step, what, lr
        super().__init__(f"training diverged at step {step} ({what}); lower the learning rate "
                         f"(lr={lr:g})")

    def __reduce__(self) -> tuple:  # a worker process sends it to the driver by pickling
        return (type(self), (self.step, self.what, self.lr))


def check_finite_loss(loss: float, step: int, cfg: TrainConfig, lr: float | None = None) -> None:
    """Raise `DivergenceError` for a non-finite loss or one above `cfg.max_loss`."""
    if not math.isfinite(loss) or loss > cfg.max_loss:
        raise DivergenceError(step, f"loss={loss:.4g}", cfg.lr if lr is None else lr)


def check_finite_grads(params: list[torch.Tensor], step: int, cfg: TrainConfig) -> None:
    """Raise `DivergenceError` when the gradient norm over `params` is not finite."""
    grads = [p.grad for p in params if p.grad is not None]
    if grads and not math.isfinite(float(torch.nn.utils.get_total_norm(grads))):
        raise DivergenceError(step, "gradient norm is not finite", cfg.lr)


def optimizer_step(opt: Optimizer, step: int, cfg: TrainConfig) -> None:
    """`opt.step()`, with an update too large for float32 reported as divergence.

    Adam's step size is lr / (1 - beta1^t): at lr near float32's maximum torch refuses the
    update with a RuntimeError before any loss goes non-finite (seen with a bounded loss).
    """
    try:
        opt.step()
    except RuntimeError as err:
        if "overflow" not in str(err):
            raise
        raise DivergenceError(step, "the update overflows float32", cfg.lr) from None


def check_finite_metrics(metrics: dict[str, Any], step: int, cfg: TrainConfig) -> None:
    """Raise `DivergenceError` when a numeric evaluation metric is NaN or infinite."""
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise DivergenceError(step, f"eval metric {key}={value}", cfg.lr)


@dataclasses.dataclass
class TrainResult:
    """What a training run ended with."""

    steps: int  # optimizer steps taken
    stop_reason: Literal["steps", "target", "diverged", "patience"]
    last_eval: dict[str, float]
    best_eval: dict[str, float]  # the evaluation with the highest "acc" (or the last one)
    message: str = ""
    # with cfg.patience: True when the run ended on its step budget while `monitor` had
    # improved within the last `patience` evaluations (a starved run, not a converged one)
    still_improving: bool = False
    best_monitor_step: int = -1  # step of the evaluation with the best `monitor` value

    @property
    def diverged(self) -> bool:
        return self.stop_reason == "diverged"

    def raise_if_diverged(self) -> None:
        """Kept for callers written before the loop raised itself: now a no-op."""


class EpochBatches:
    """Seeded minibatches over n fixed examples: step -> indices, a fresh shuffle each epoch.

    Each epoch is one permutation of [0, n) cut into ceil(n / batch_size) batches (the last
    may be smaller); call with consecutive steps from 0, as `train` does.
    """

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        self.n, self.size, self.gen = n, min(batch_size, n), gen
        self.per_epoch = math.ceil(n / self.size)
        self._batches: list[torch.Tensor] = []

    def __call__(self, step: int) -> torch.Tensor:
        if step % self.per_epoch == 0:
            self._batches = list(torch.randperm(self.n, generator=self.gen).split(self.size))
        return self._batches[step % self.per_epoch]


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of the base lr at `step` (0-based): warmup, then the schedule."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = step - cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, cfg.steps - cfg.warmup_steps)
        cos = 0.5 * (1 + math.cos(math.pi * min(t, span) / span))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos
    if cfg.schedule == "step":
        if cfg.decay_at:
            span = max(1, cfg.steps - cfg.warmup_steps)
            return cfg.decay_gamma ** sum(t >= f * span for f in cfg.decay_at)
        return cfg.decay_gamma ** (t // cfg.decay_every)
    return 1.0


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> Optimizer:
    """The optimizer named by `cfg.optimizer` over the trainable `params` (`train.optim`:
    torch.optim's updates without its import of torch._dynamo)."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                decoupled=cfg.optimizer == "adamw")


def train(
    params: Iterable[torch.nn.Parameter],
    loss_fn: Callable[[int], torch.Tensor],
    cfg: TrainConfig,
    eval_fn: Callable[[], dict[str, float]] | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    show_progress: bool | None = None,
    desc: str = "train",
) -> TrainResult:
    """Optimise `params` on `loss_fn(step)`; evaluate every `cfg.eval_every` steps.

    Evaluations happen at step 0 (before any update), every `eval_every` steps, and at the
    end. `on_eval(step, metrics)` sees each one (the caller logs it). Training stops early when
    `metrics["acc"] >= cfg.target_acc > 0`, or as "diverged" when the loss is non-finite or
    exceeds `cfg.max_loss`. With `cfg.patience > 0` it also stops ("patience") after that many
    evaluations without `cfg.monitor` improving; a run that instead ends on its step budget
    while it improved within the last `patience` evaluations has `still_improving` set.
    """
    params = list(params)
    opt = make_optimizer(params, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    last: dict[str, float] = {}
    best: dict[str, float] = {}
    watch = {"best": math.inf, "step": -1, "stale": 0}  # the patience rule's state
    sign = 1.0 if cfg.monitor_mode == "min" else -1.0

    def stalled(step: int, metrics: dict[str, float]) -> bool:
        """Update the patience state; True once `patience` evaluations brought no gain."""
        value = metrics.get(cfg.monitor)
        if value is None or not math.isfinite(value):
            watch["stale"] += 1  # a missing or NaN metric is never an improvement
        elif sign * value < watch["best"] - cfg.min_delta:
            watch.update(best=sign * value, step=step, stale=0)
        else:
            watch["stale"] += 1
        return cfg.patience > 0 and watch["stale"] >= cfg.patience

    def evaluate(step: int, train_loss: float | None) -> bool:
        nonlocal last, best
        if eval_fn is None:
            metrics = {} if train_loss is None else {"loss": train_loss}
        else:
            metrics = dict(eval_fn())
        check_finite_metrics(metrics, step, cfg)
        if train_loss is not None:
            metrics.setdefault("train_loss", train_loss)
        last = metrics
        if not best or metrics.get("acc", -1.0) > best.get("acc", -1.0):
            best = dict(metrics, step=step)
        if on_eval is not None:
            on_eval(step, metrics)
        if cfg.patience > 0 and stalled(step, metrics):
            watch["stop"] = True
        return cfg.target_acc > 0 and metrics.get("acc", 0.0) >= cfg.target_acc

    def patience_result(done: int, reason: str) -> TrainResult:
        improving = reason == "steps" and cfg.patience > 0 and watch["stale"] < cfg.patience
        return TrainResult(done, reason, last, best, still_improving=improving,
                           best_monitor_step=watch["step"])

    if evaluate(0, None):
        return TrainResult(0, "target", last, best)
    loss_value = float("nan")
    bar = progress(range(cfg.steps), total=cfg.steps, desc=desc, enabled=show_progress)
    for step in bar:
        factor = lr_factor(cfg, step)
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base * factor
        loss = loss_fn(step)
        loss_value = float(loss.detach())
        check_finite_loss(loss_value, step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:  # the clip computes the norm anyway; a non-finite one diverged
            norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            if not math.isfinite(norm):
                raise DivergenceError(step, "gradient norm is not finite", cfg.lr)
        else:
            check_finite_grads(params, step, cfg)
        optimizer_step(opt, step, cfg)
        done = step + 1
        at_eval = done % cfg.eval_every == 0 or done == cfg.steps
        if at_eval and evaluate(done, loss_value):
            return patience_result(done, "target")
        if at_eval and watch.get("stop") and done < cfg.steps:
            return patience_result(done, "patience")
    return patience_result(cfg.steps, "steps")
