"""The type rules every config knob obeys, with no code per knob (docs/reliability.md).

`check_types(section)` applies them to the fields of one dataclass from their annotations and
defaults; `check_memory(cfg)` refuses sizes whose tensors cannot fit before anything is
allocated. `factlab.config.validate` runs both (this module is its lower layer, so that it has
no import of the config module).

- a float is finite (NaN never; +-inf only where the field says `metadata={"inf": True}`,
  see `allow_inf`) and >= 0 unless the field's metadata gives another "min";
- an int is at most 2^31 - 1 (or its metadata "max") and at least: its metadata "min"; else
  the field's default when that is a negative sentinel (-1); else 0 for the knobs where 0 means
  "none" (`ZERO_MEANS_NONE`) or whose default is 0; else 1 (a size or count);
- an int whose name says it is a seed is in [0, 2^63), the range every generator accepts;
- a tuple is non-empty unless its default is empty, and each element obeys the scalar rules;
- the largest dense tensor the sizes of one section imply (the product of its two largest
  sizes, float32, with gradient and two Adam moments) must fit in this machine's memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Iterator
from typing import Any, Union, get_args, get_origin


class ConfigError(ValueError):
    """A bad configuration value or key. Its message is a single readable line."""


INT_MAX = 2**31 - 1  # sizes index int32-addressed tensors; anything larger cannot be allocated
SEED_MAX = 2**63 - 1  # torch.manual_seed and numpy's SeedSequence accept [0, 2^64)
# knobs whose default is a positive size but for which 0 (or -1) means "none" (or "derived")
ZERO_MEANS_NONE: dict[str, int] = {"n_noise": -1, "d_mlp": 0, "n_finetune": 0, "n_heatmap": 0,
                                   "fewshot_k": 0, "widths": 0, "max_rows": 0}
# names that count optimizer steps or cadences, not tensor sizes (left out of the memory estimate)
_NOT_A_DIMENSION = ("step", "every", "seed", "worker", "limit", "chunk", "prompts", "n_test",
                    "n_lo", "n_hi",  # search bounds on a prompt count
                    "max_new_tokens", "rank", "offset", "_k")


def allow_inf(default: float) -> Any:
    """A float field that may be +inf (e.g. a threshold where inf means "never")."""
    return dataclasses.field(default=default, metadata={"inf": True})


def require(condition: bool, key: str, message: str) -> None:
    """Raise `ConfigError` for `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass (cached: resolving them is the slow part)."""
    return typing.get_type_hints(cls)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _scalar_types(tp: Any) -> set[type]:
    """The scalar types an annotation admits (through Optional, Union and tuple[...])."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType, tuple):
        return set().union(*(_scalar_types(a) for a in get_args(tp) if a is not Ellipsis))
    return {tp} if isinstance(tp, type) else set()


def _int_floor(name: str, f: dataclasses.Field, default: Any) -> int:
    if "min" in f.metadata:
        return f.metadata["min"]
    values = [v for v in (default if isinstance(default, tuple) else (default,))
              if isinstance(v, int) and not isinstance(v, bool)]
    if values and min(values) < 0:
        return min(values)  # a negative sentinel such as -1 ("derived")
    if name in ZERO_MEANS_NONE:
        return ZERO_MEANS_NONE[name]
    return 0 if not values or min(values) == 0 else 1


def check_types(cfg: Any, prefix: str = "") -> None:
    """The rules every knob obeys by its annotated type (module docstring); one-line errors."""
    hints = field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            continue
        key, kinds, default = prefix + f.name, _scalar_types(hints[f.name]), _default(f)
        items = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple):
            require(len(value) > 0 or default == (), key,
                    "needs at least one value (an empty list is allowed only where the default "
                    "is empty)")
        for item in items:
            if isinstance(item, float) and float in kinds:
                _check_float(key, item, f)
            elif isinstance(item, int) and not isinstance(item, bool) and int in kinds:
                if "seed" in f.name:
                    require(0 <= item <= SEED_MAX, key, f"a seed must be in [0, 2^63), got {item}")
                    continue
                floor = _int_floor(f.name, f, default)
                top = f.metadata.get("max", INT_MAX)
                require(item >= floor, key, f"must be >= {floor}, got {item}")
                require(item <= top, key, f"must be <= {top}, got {item}")


def _check_float(key: str, value: float, f: dataclasses.Field) -> None:
    require(not math.isnan(value), key, "must be a number, got nan")
    require(not math.isinf(value) or f.metadata.get("inf", False), key,
            f"must be finite, got {value}")
    floor = f.metadata.get("min", 0.0)
    require(value >= floor, key, f"must be >= {floor:g}, got {value:g}")


def _sizes(cfg: Any, prefix: str = "") -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Per section: the (key, value) of each int knob that is a tensor dimension."""
    own: list[tuple[str, int]] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from _sizes(value, f"{prefix}{f.name}.")
            continue
        if any(word in f.name for word in _NOT_A_DIMENSION):
            continue
        items = value if isinstance(value, tuple) else (value,)
        ints = [v for v in items if isinstance(v, int) and not isinstance(v, bool)]
        if ints and max(ints) > 1:
            own.append((prefix + f.name, max(ints)))
    yield prefix, own


def largest_matrix(cfg: Any) -> int:
    """Elements of the largest matrix the sizes of one section imply (0 if none)."""
    best = 0
    for _section, sizes in _sizes(cfg):
        if len(sizes) >= 2:
            a, b = sorted(v for _, v in sizes)[-2:]
            best = max(best, a * b)
    return best


def memory_limit() -> int:
    """Bytes of physical memory here (FACTLAB_MEMORY_LIMIT_GB overrides, e.g. for a share)."""
    override = os.environ.get("FACTLAB_MEMORY_LIMIT_GB")
    if override:
        return int(float(override) * 2**30)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def check_memory(cfg: Any) -> None:
    """Refuse, before anything is allocated, sizes whose largest implied tensor cannot fit.

    The estimate per section is the product of its two largest sizes as one float32 matrix,
    times 4 (the weights, their gradient and Adam's two moments). It is a lower bound of what
    such a model needs, so it never refuses a run that would fit.
    """
    limit = memory_limit()
    for _section, sizes in _sizes(cfg):
        if len(sizes) < 2:
            continue
        (k1, a), (k2, b) = sorted(sizes, key=lambda kv: kv[1])[-2:]
        need = 16 * a * b
        require(need <= limit, k2, f"{k2}={b} with {k1}={a} needs about {_gib(need)} for one "
                f"matrix with its gradient and optimizer state; this machine has {_gib(limit)}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n < 2**40 else f"{n / 2**40:.3g} TiB"
