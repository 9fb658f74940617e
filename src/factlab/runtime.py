"""Seeding, threads, device selection and progress bars: the few process-wide concerns.

Thread policy (docs/reliability.md): every run picks its intra-op thread count once, before it
starts, and records it in config.json's meta. The default is one thread: most models here are
small, a second thread gains little on them and loses a great deal when other processes share
the cores (a tiny run took 120 s with the default threads on a loaded 2-core machine, 2.5 s
with one). A config whose largest implied matrix has at least `MANY_THREADS_AT` elements gets
up to four threads, and an experiment that measured a gain from more threads on idle cores
declares its count (`Experiment.threads`); `FACTLAB_THREADS=N` (or `factlab run --threads N`)
overrides both. With the count fixed and OpenMP/MKL dynamic threading off, a run's numbers do
not depend on the load of the machine: the same config, seed and thread count give the same
bytes.
"""

from __future__ import annotations

import contextlib
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
from factlab.knobs import largest_matrix

T = TypeVar("T")


MANY_THREADS_AT = 2**22  # elements of the largest matrix: below it, one thread is fastest
# read by OpenMP/MKL when they start: no load-dependent shrinking of the thread team
DETERMINISTIC_ENV = {"OMP_DYNAMIC": "FALSE", "MKL_DYNAMIC": "FALSE"}


def choose_threads(cfg: Any = None, preferred: int | None = None) -> int:
    """The intra-op thread count for a run of `cfg` (module docstring): the config rule's, or
    `preferred` (the count its experiment declares) when larger, capped by the usable cores."""
    flag = os.environ.get("FACTLAB_THREADS", "").strip()
    if flag:
        if not flag.isdigit() or int(flag) < 1:
            raise ConfigError(f"FACTLAB_THREADS: expected a whole number >= 1, got {flag!r}")
        return int(flag)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    rule = min(4, cores) if cfg is not None and largest_matrix(cfg) >= MANY_THREADS_AT else 1
    return max(rule, min(preferred or 1, cores))


def configure_threads(n: int) -> int:
    """Fix torch (and child processes) to `n` intra-op threads, one inter-op; return n."""
    for key, value in DETERMINISTIC_ENV.items():
        os.environ.setdefault(key, value)
    torch.set_num_threads(n)
    # only settable before the first parallel op; a later call keeps the first setting
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return n


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
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available here")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} requested but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' requested but MPS is not available here")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device: {name!r} is not a device torch knows ({err})") from None


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
