"""The training loop: reaching a target, schedules, divergence, determinism."""

import math

import pytest
import torch
import torch.nn.functional as F

from factlab.models.memories import MLPMemory
from factlab.train.loop import DivergenceError, TrainConfig, lr_factor, train


def _memory_task(gen, n=60, d=16, width=48):
    model = MLPMemory(n, n, d, width, gen)
    x, y = torch.arange(n), torch.randperm(n, generator=gen)
    loss_fn = lambda step: F.cross_entropy(model(x), y)
    eval_fn = lambda: {"acc": (model(x).argmax(-1) == y).float().mean().item()}
    return model, loss_fn, eval_fn


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_trainer_reaches_target_accuracy_and_stops_early(gen, optimizer):
    model, loss_fn, eval_fn = _memory_task(gen)
    lr = 1.0 if optimizer == "sgd" else 0.03
    cfg = TrainConfig(optimizer=optimizer, lr=lr, momentum=0.9 if optimizer == "sgd" else 0.0,
                      steps=3000, eval_every=10, target_acc=0.99)
    seen = []
    result = train(model.parameters(), loss_fn, cfg, eval_fn, on_eval=lambda s, m: seen.append(s))
    assert result.stop_reason == "target" and result.last_eval["acc"] >= 0.99
    assert result.steps < 3000 and seen[0] == 0 and seen[-1] == result.steps


def test_schedules():
    cos = TrainConfig(schedule="cosine", steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(cos, 0) == pytest.approx(0.1) and lr_factor(cos, 9) == pytest.approx(1.0)
    assert lr_factor(cos, 10) == pytest.approx(1.0)
    assert lr_factor(cos, 60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(cos, 110) == pytest.approx(0.1)
    step = TrainConfig(schedule="step", decay_every=5, decay_gamma=0.5)
    assert [lr_factor(step, s) for s in (0, 4, 5, 10)] == [1, 1, 0.5, 0.25]
    assert lr_factor(TrainConfig(), 123) == 1.0
    milestones = TrainConfig(schedule="step", steps=100, decay_at=(0.5, 0.75))
    assert [lr_factor(milestones, s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])


def test_schedule_is_applied_to_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(()))
    lrs = []

    def loss_fn(step):
        lrs.append(step)
        return (p - 1) ** 2

    cfg = TrainConfig(optimizer="sgd", lr=1.0, schedule="step", decay_every=2, decay_gamma=0.5,
                      steps=4)
    train([p], loss_fn, cfg)
    # 4 SGD steps with lr 1, 1, 0.5, 0.5 on (p-1)^2: p -> 2 -> 0 -> 1 -> 1
    assert p.item() == pytest.approx(1.0)


def test_divergence_raises_from_the_loop_naming_the_step_and_lr():
    p = torch.nn.Parameter(torch.ones(()))
    losses = iter([1.0, 2.0, float("nan"), 1.0])
    with pytest.raises(DivergenceError) as err:
        train([p], lambda step: p * next(losses), TrainConfig(steps=4, lr=0.1))
    assert err.value.step == 2 and err.value.lr == 0.1
    assert "diverged at step 2" in str(err.value) and "lr=0.1" in str(err.value)
    assert "\n" not in str(err.value)


def test_exploding_loss_above_max_loss_diverges_and_inf_disables_the_cap():
    p = torch.nn.Parameter(torch.ones(()))
    with pytest.raises(DivergenceError, match="step 0 .loss=1e"):
        train([p], lambda step: p * 1e5, TrainConfig(steps=2, lr=0.1))
    train([p], lambda step: p * 1e5, TrainConfig(steps=2, lr=0.1, max_loss=float("inf")))


def test_non_finite_gradient_diverges_even_with_a_finite_loss():
    p = torch.nn.Parameter(torch.zeros(()))
    # sqrt at 0 has an infinite derivative while the loss itself is 0
    with pytest.raises(DivergenceError, match="gradient norm"):
        train([p], lambda step: torch.sqrt(p.abs()), TrainConfig(steps=3, lr=0.1))
    with pytest.raises(DivergenceError, match="gradient norm"):
        train([p], lambda step: torch.sqrt(p.abs()), TrainConfig(steps=3, lr=0.1, grad_clip=1.0))


def test_non_finite_eval_metric_diverges():
    p = torch.nn.Parameter(torch.ones(()))
    metrics = iter([{"acc": 0.1}, {"acc": float("nan")}])
    with pytest.raises(DivergenceError, match="eval metric acc=nan"):
        train([p], lambda step: (p - 1) ** 2, TrainConfig(steps=4, eval_every=2, lr=0.1),
              lambda: next(metrics))


def test_ensemble_member_divergence_stops_the_ensemble():
    from factlab.train.ensemble import train_ensemble

    w = torch.ones(3, requires_grad=True)
    scale = torch.tensor([1.0, 1.0, float("nan")])
    with pytest.raises(DivergenceError, match="step 0"):
        train_ensemble([w], lambda step: w * scale, TrainConfig(steps=3, lr=0.1))


def test_max_loss_must_be_positive_and_may_be_inf():
    from factlab.config import ConfigError, apply_overrides

    for bad in ("-1", "0", "nan"):
        with pytest.raises(ConfigError, match="max_loss"):
            apply_overrides(TrainConfig(), {"max_loss": bad})
    assert apply_overrides(TrainConfig(), {"max_loss": "inf"}).max_loss == float("inf")
    with pytest.raises(ConfigError, match="lr: must be finite"):
        apply_overrides(TrainConfig(), {"lr": "inf"})


def test_training_is_deterministic_given_the_seed():
    def once():
        gen = torch.Generator().manual_seed(3)
        model, loss_fn, eval_fn = _memory_task(gen)
        hist = []
        train(model.parameters(), loss_fn, TrainConfig(steps=50, eval_every=10, lr=0.01),
              eval_fn, on_eval=lambda s, m: hist.append((s, m["acc"], m.get("train_loss"))))
        return hist, model.W_in.detach().clone()

    (h1, w1), (h2, w2) = once(), once()
    assert h1 == h2 and torch.equal(w1, w2)
    assert not math.isnan(h1[-1][2])
