"""TransformerLens-style hook points without the TransformerLens dependency.

A `HookPoint` is a named identity module. A hook is `fn(tensor, *, hook) -> None | tensor`:
returning None keeps the activation, returning a tensor replaces it. A `HookedModule` names
its hook points after their module paths (``blocks.0.attn.hook_pattern``) and offers
`run_with_cache`, `run_with_hooks` and the `hooks(...)` context manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

HookFn = Callable[..., "torch.Tensor | None"]


class HookPoint(nn.Module):
    """Identity module that runs the hooks attached to it."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""
        self._fns: list[tuple[HookFn, bool]] = []  # (fn, permanent)

    def add(self, fn: HookFn, permanent: bool = False) -> None:
        self._fns.append((fn, permanent))

    @property
    def active(self) -> bool:
        """Whether any hook is attached (a model may skip computing an unobserved tensor)."""
        return bool(self._fns)

    def clear(self, including_permanent: bool = False) -> None:
        self._fns = [(f, p) for f, p in self._fns if p and not including_permanent]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn, _ in self._fns:
            out = fn(x, hook=self)
            if out is not None:
                x = out
        return x


NamesFilter = Callable[[str], bool] | Sequence[str] | str | None


def resolve_names(names_filter: NamesFilter, available: list[str]) -> list[str]:
    """The hook names a `run_with_cache` filter selects: None (all), one name, a list of
    names, or a predicate over `available`."""
    if names_filter is None:
        return list(available)
    if isinstance(names_filter, str):
        return [names_filter]
    if callable(names_filter):
        return [n for n in available if names_filter(n)]
    return list(names_filter)


class ActivationCache(dict):
    """Activations keyed by hook name (a plain dict with a friendlier error)."""

    def __missing__(self, key: str) -> torch.Tensor:
        raise KeyError(f"no activation {key!r}; cached: {', '.join(sorted(self))}")


class HookedModule(nn.Module):
    """Base class: call `setup_hooks()` at the end of `__init__` to name the hook points."""

    def setup_hooks(self) -> None:
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    @property
    def hook_names(self) -> list[str]:
        """Every hook point name, in module order."""
        return list(self.hook_dict)

    def add_hook(self, name: str, fn: HookFn, permanent: bool = False) -> None:
        """Attach `fn` to hook point `name`."""
        if name not in self.hook_dict:
            raise KeyError(f"no hook point {name!r}; available: {', '.join(self.hook_dict)}")
        self.hook_dict[name].add(fn, permanent)

    def reset_hooks(self, including_permanent: bool = False) -> None:
        """Remove all temporary hooks (and the permanent ones if asked)."""
        for hp in self.hook_dict.values():
            hp.clear(including_permanent)

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[HookedModule]:
        """Attach hooks for the duration of the block; they are removed on exit."""
        try:
            for name, fn in fwd_hooks:
                self.add_hook(name, fn)
            yield self
        finally:
            self.reset_hooks()

    def run_with_hooks(self, tokens: torch.Tensor,
                       fwd_hooks: Sequence[tuple[str, HookFn]] = ()) -> torch.Tensor:
        """One forward pass with temporary hooks."""
        with self.hooks(fwd_hooks):
            return self(tokens)

    def run_with_cache(self, tokens: torch.Tensor,
                       names_filter: NamesFilter = None,
                       ) -> tuple[torch.Tensor, ActivationCache]:
        """Forward pass returning (logits, cache of detached activations)."""
        wanted = resolve_names(names_filter, list(self.hook_dict))
        cache = ActivationCache()

        def save(x: torch.Tensor, *, hook: HookPoint) -> None:
            cache[hook.name] = x.detach()

        with torch.no_grad():
            logits = self.run_with_hooks(tokens, [(n, save) for n in wanted])
        return logits, cache
