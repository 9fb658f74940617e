"""Shared helpers of the benchmarks: arguments, timing, FLOP counting, matmul peak, ratios.

Every benchmark prints its numbers as ratios against a baseline measured in the same run,
never against a number from another day. Timings on a shared machine are noisy: each timing is
the median of several repeats, and the header line prints the load average so a reader can
tell a loaded run from an idle one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

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


def paired_timeit(fn: Callable[[], object], device: str = "cpu", reps: int = 5,
                  n: int = 2048) -> tuple[float, float]:
    """(median seconds per call of `fn`, median matmul peak FLOP/s) with one n x n product
    timed right before each call, so every step is judged against the peak of its moment
    (on a shared machine the load drifts between a separate peak and the steps)."""
    import torch

    a = torch.randn(n, n, device=device)
    fn()
    steps, peaks = [], []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        a @ a
        sync(device)
        mid = time.perf_counter()
        fn()
        sync(device)
        steps.append(time.perf_counter() - mid)
        peaks.append(2 * n**3 / (mid - start))
    return statistics.median(steps), statistics.median(peaks)


def mfu_line(label: str, flops: float, seconds: float, peak: float) -> str:
    """'label: G GFLOP/step, ms/step, GFLOP/s = P% of the matmul peak'."""
    return (f"  {label}: {flops / 1e9:.2f} GFLOP/step, {seconds * 1e3:.1f} ms/step, "
            f"{flops / seconds / 1e9:.1f} GFLOP/s = {flops / seconds / peak:.0%} of the "
            f"matmul peak measured in this run")


def run_process(cmd: Sequence[str], cwd: str | Path | None = None,
                env: dict[str, str] | None = None, timeout: float = 3600.0
                ) -> tuple[float, float, int, str]:
    """Run `cmd` to completion: (wall seconds, peak RSS of that child in GB, exit code, its
    output). The RSS comes from wait4 on the child itself, so two children run one after the
    other each get their own maximum. The child's CPU seconds (user + system, its reaped
    children included) are left in `run_process.last_cpu`: on a loaded machine they measure
    the work better than the wall time does."""
    import tempfile

    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env={**os.environ, **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        run_process.last_cpu = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
        log.seek(0)
        return wall, usage.ru_maxrss / 2**20, proc.returncode, log.read()


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux reports KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def python_cmd(*args: str) -> list[str]:
    """This interpreter running `args`."""
    return [sys.executable, *args]


def ratio_line(label: str, value: float, baseline_label: str, baseline: float,
               unit: str = "") -> str:
    """'label: value unit = R x baseline_label (baseline unit)'."""
    return (f"  {label}: {value:.4g}{unit} = {value / baseline:.2f}x {baseline_label} "
            f"({baseline:.4g}{unit})")


def header(title: str, device: str) -> None:
    """The machine line every benchmark starts with."""
    import torch

    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0))
    busy = "UNDER LOAD" if load > 0.5 * cores else "idle-ish"
    print(f"{title}  [device={device}, torch {torch.__version__}, "
          f"threads={torch.get_num_threads()}, cores={cores}, load avg {load:.1f}: {busy}]",
          flush=True)
