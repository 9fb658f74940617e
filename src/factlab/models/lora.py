"""In-house low-rank adapters (LoRA) for any weight parameter of any module.

W <- W + (alpha / r) * ΔW, with ΔW = B A in the column convention of the LoRA paper and of peft
(A: [r, d_in] ~ N(0, 1/d_in), B: [d_out, r] = 0). factlab's own models store weights in the
row-vector convention (y = x @ W, W: [..., d_in, d_out]), where the update is (B A)^T;
`layout="col"` serves nn.Linear-style weights [d_out, d_in] (e.g. a HuggingFace model's
`q_proj.weight`). Leading dimensions (heads: W_Q is [H, d, d_h]) get one adapter each.

The adapter is a torch parametrization, so the module's forward is untouched and `module.W`
already means W + (alpha/r) ΔW. Because B starts at exactly zero, the wrapped model computes
bit-for-bit what it computed before. `add_lora` freezes every other parameter of the model, so
only the factors train. A and B stay exposed (`lora_factors`) for analysis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize


class LoRA(nn.Module):
    """Parametrization W -> W + scale * ΔW with trainable factors A, B (B zero at init)."""

    def __init__(self, shape: torch.Size, rank: int, alpha: float | None = None,
                 layout: Literal["row", "col"] = "row", gen: torch.Generator | None = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        if len(shape) < 2:
            raise ValueError(f"LoRA needs a matrix (or stacked matrices), got shape {tuple(shape)}")
        *lead, a, b = shape
        d_in, d_out = (a, b) if layout == "row" else (b, a)
        self.rank, self.layout = rank, layout
        self.scale = (rank if alpha is None else alpha) / rank
        A = torch.randn(*lead, rank, d_in, generator=gen) / math.sqrt(d_in)
        self.A = nn.Parameter(A)  # [..., r, d_in]
        self.B = nn.Parameter(torch.zeros(*lead, d_out, rank))  # [..., d_out, r]

    def delta(self) -> torch.Tensor:
        """The scaled update in the wrapped weight's own layout."""
        ba = self.scale * (self.B @ self.A)  # [..., d_out, d_in]
        return ba.transpose(-1, -2) if self.layout == "row" else ba

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        return W + self.delta()


def _split(name: str) -> tuple[str, str]:
    parent, _, attr = name.rpartition(".")
    return parent, attr


def add_lora(model: nn.Module, targets: Iterable[str], rank: int, alpha: float | None = None,
             layout: Literal["row", "col"] = "row", gen: torch.Generator | None = None,
             freeze_rest: bool = True) -> dict[str, LoRA]:
    """Wrap each named parameter (e.g. "blocks.0.mlp.W_in") with a LoRA adapter.

    Returns {name: adapter}. With `freeze_rest`, every parameter that is not a LoRA factor
    stops requiring gradients (the wrapped originals included), so an optimiser over
    `model.parameters()` that skips frozen tensors trains only A and B.
    """
    targets = list(targets)
    named = dict(model.named_parameters())
    missing = [t for t in targets if t not in named]
    if missing:
        raise KeyError(f"no parameter {missing[0]!r}; available: {', '.join(named)}")
    adapters: dict[str, LoRA] = {}
    for name in targets:
        parent_name, attr = _split(name)
        parent = model.get_submodule(parent_name) if parent_name else model
        weight = getattr(parent, attr)
        adapter = LoRA(weight.shape, rank, alpha, layout, gen).to(weight.device, weight.dtype)
        parametrize.register_parametrization(parent, attr, adapter)
        adapters[name] = adapter
    if freeze_rest:
        factors = {id(p) for a in adapters.values() for p in (a.A, a.B)}
        for p in model.parameters():
            p.requires_grad_(id(p) in factors)
    return adapters


def lora_factors(adapters: dict[str, LoRA]) -> dict[str, torch.Tensor]:
    """{name.A, name.B: tensor} of every adapter, detached (for analysis or safetensors)."""
    out = {}
    for name, a in adapters.items():
        out[f"{name}.A"] = a.A.detach()
        out[f"{name}.B"] = a.B.detach()
    return out


def lora_parameters(adapters: dict[str, LoRA]) -> list[nn.Parameter]:
    """The trainable factors, A and B of every adapter."""
    return [p for a in adapters.values() for p in (a.A, a.B)]


def merge_lora(model: nn.Module, adapters: dict[str, LoRA]) -> None:
    """Fold each adapter into its weight (W <- W + scale ΔW) and remove the parametrization."""
    for name in adapters:
        parent_name, attr = _split(name)
        parent = model.get_submodule(parent_name) if parent_name else model
        parametrize.remove_parametrizations(parent, attr, leave_parametrized=True)
