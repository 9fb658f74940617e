"""Choosing a hyperparameter on a validation split.

The rule, fixed before any run: the candidate with the highest validation score wins; ties
go to the earliest candidate in the order given (grids are listed from the smallest lr up, so
a tie keeps the gentler step). The split read here must be disjoint from the one any verdict
reads.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def best_on_validation(scores: Mapping[K, float]) -> K:
    """The key with the highest finite validation score (the first one on ties)."""
    if not scores:
        raise ValueError("best_on_validation needs at least one candidate")
    best_key, best = None, -math.inf
    for key, value in scores.items():
        if value is not None and math.isfinite(value) and value > best:
            best_key, best = key, value
    return next(iter(scores)) if best_key is None else best_key
