"""Seeding, device selection and progress bars: the few process-wide concerns."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
import torch

from factlab.config import ConfigError

T = TypeVar("T")


def set_seed(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a fresh CPU generator seeded with `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return make_generator(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A `torch.Generator` on `device` seeded with `seed` (for samplers)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any JSON-able parts (e.g. a base seed and a grid cell)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little") & 0x7FFFFFFF


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; an unavailable device is a one-line error."""

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available here")
    return torch.device(name)


def progress_enabled() -> bool:
    """Progress bars show on an interactive terminal unless FACTLAB_PROGRESS=0."""
    flag = os.environ.get("FACTLAB_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no")
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "",
             enabled: bool | None = None) -> Iterable[T]:
    """Wrap `iterable` in a tqdm bar when progress is enabled."""
    if enabled is None:
        enabled = progress_enabled()
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
