"""factlab's optimizers take torch.optim's CPU updates exactly, without importing torch._dynamo."""

import subprocess
import sys

import pytest
import torch

from factlab.train.loop import TrainConfig, make_optimizer

CASES = [("sgd", 0.0, 0.0), ("sgd", 0.9, 1e-2), ("adam", 0.0, 0.0), ("adam", 0.0, 1e-2),
         ("adamw", 0.0, 0.01)]


def reference(name: str, params, lr: float, momentum: float, wd: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


@pytest.mark.parametrize("name,momentum,wd", CASES)
def test_updates_equal_torch_optim_bit_for_bit(name, momentum, wd):
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(5, 3, generator=gen), torch.randn(3, generator=gen)]
    ours = [t.clone().requires_grad_() for t in init]
    theirs = [t.clone().requires_grad_() for t in init]
    cfg = TrainConfig(optimizer=name, lr=0.05, momentum=momentum, weight_decay=wd)
    opt_a, opt_b = make_optimizer(ours, cfg), reference(name, theirs, 0.05, momentum, wd)
    x = torch.randn(7, 5, generator=gen)
    for step in range(6):
        for params, opt in ((ours, opt_a), (theirs, opt_b)):
            opt.param_groups[0]["lr"] = 0.05 / (step + 1)  # a schedule, as the loop sets it
            opt.zero_grad(set_to_none=True)
            ((x @ params[0] + params[1]).tanh() ** 2).sum().backward()
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), (name, step)


def test_parameters_without_gradient_are_left_alone():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = make_optimizer([a, b], TrainConfig(optimizer="adam", lr=0.1))
    a.sum().backward()
    opt.step()
    assert not torch.equal(a, torch.ones(2)) and torch.equal(b, torch.ones(2))
    with pytest.raises(ValueError, match="empty"):
        make_optimizer([], TrainConfig())


def test_a_training_step_does_not_import_dynamo():
    code = ("import sys, torch\n"
            "from factlab.train.loop import TrainConfig, make_optimizer\n"
            "w = torch.zeros(3, requires_grad=True)\n"
            "opt = make_optimizer([w], TrainConfig(optimizer='adamw', lr=0.1))\n"
            "(w - 1).square().sum().backward(); opt.step(); opt.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
