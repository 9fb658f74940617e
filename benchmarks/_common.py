"""Shared helpers of the benchmarks: arguments, timing, FLOP counting, matmul peak, ratios.

Every benchmark prints its numbers as ratios against a baseline measured in the same process
(DESIGN.md: "Fast by default, measured always"). Timings on a shared machine are noisy: each
timing is the median of several repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("FACTLAB_PROGRESS", "0")


def parse_args(description: str, argv: list[str] | None = None,
               extra: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
    """--quick, --device, --threads (+ benchmark-specific options)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: all cores of this process)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def sync(device: str) -> None:
    """Wait for queued kernels (CUDA) so wall times are honest."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn: Callable[[], object], device: str = "cpu", warmup: int = 3, reps: int = 5,
           inner: int = 1) -> float:
    """Median seconds per call of `fn` over `reps` repeats of `inner` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device: str = "cpu", n: int = 2048, reps: int = 5) -> float:
    """Measured fp32 matmul rate (FLOP/s) of an n x n product: this machine's 'peak'."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    seconds = timeit(lambda: a @ b, device, warmup=2, reps=reps)
    return 2 * n**3 / seconds


def ratio_line(label: str, value: float, baseline_label: str, baseline: float,
               unit: str = "") -> str:
    """'label: value unit = R x baseline_label (baseline unit)'."""
    return (f"  {label}: {value:.4g}{unit} = {value / baseline:.2f}x {baseline_label} "
            f"({baseline:.4g}{unit})")


def header(title: str, device: str) -> None:
    """The machine line every benchmark starts with."""
    import torch

    print(f"{title}  [device={device}, torch {torch.__version__}, "
          f"threads={torch.get_num_threads()}, cores={len(os.sched_getaffinity(0))}]",
          flush=True)
