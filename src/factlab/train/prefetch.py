"""Draw the next training batch on a background thread while the current step computes.

Batches come out in the order they are drawn, from one thread that owns the sampler's
generator, so the stream is the same as drawing them inline; the step never waits for the
sampler unless sampling is slower than the step. Torch ops release the GIL, so the overlap is
real on a multi-core machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def prefetch(draw: Callable[[], T]) -> Iterator[T]:
    """An endless iterator over draw(), draw(), ... with the next call already running."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="factlab-prefetch") as pool:
        pending = pool.submit(draw)
        while True:
            batch = pending.result()
            pending = pool.submit(draw)
            yield batch
