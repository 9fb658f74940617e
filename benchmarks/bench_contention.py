"""Two runs at once on a small machine: each within 2.5x of its solo wall time, same bytes.

    python benchmarks/bench_contention.py [--quick] [--threads-contrast]

1. One `factlab run` of a small config alone, then two copies of it at the same time (each in
   its own run directory). The ratio printed is the slower concurrent run's wall time over the
   solo one, from the runs' own `wall_time_s` (training and evaluation; interpreter start-up
   and imports are reported apart). With the default thread policy (one thread per run,
   docs/reliability.md) two runs on two cores should each take about their solo time; the
   bound is 2.5x, so a loaded machine still passes and a thread fight (each run spreading
   over every core, as before the policy) does not.
2. Determinism: the metrics.jsonl of the solo run must equal, byte for byte, that of the same
   config run beside a CPU-burning process, and those of the two concurrent copies.

`--threads-contrast` also times the pair with FACTLAB_THREADS set to every core, which is what
`factlab run` did before the thread policy. Exit code 1 when a bound or a comparison fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BURN = "import time\nt = time.time()\nwhile time.time() - t < {s}: pass\n"


def _config(quick: bool) -> list[str]:
    steps = 256 if quick else 1024
    return ["recall-sequential", "seed=11", f"train.steps={steps}", "train.eval_every=32",
            "n_test=512", "--no-progress"]


def _env(threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "FACTLAB_THREADS")}
    env["FACTLAB_PROGRESS"] = "0"
    if threads:
        env["FACTLAB_THREADS"] = str(threads)
    return env


def _start(args: list[str], out: Path, threads: int | None) -> tuple[subprocess.Popen, float]:
    cmd = [sys.executable, "-m", "factlab.cli", "run", *args, "--out", str(out)]
    return subprocess.Popen(cmd, env=_env(threads), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE), time.perf_counter()


def _finish(proc: subprocess.Popen, t0: float, out: Path) -> tuple[float, float]:
    """(the run's own wall time, the process's wall time)."""
    _, err = proc.communicate()
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"run into {out} failed: {err.decode().strip()}")
    return json.loads((out / "summary.json").read_text())["wall_time_s"], total


def _pair(args: list[str], root: Path, tag: str, threads: int | None) -> list[tuple[float, float]]:
    started = [_start(args, root / f"{tag}{i}", threads) for i in range(2)]
    return [_finish(p, t0, root / f"{tag}{i}") for i, (p, t0) in enumerate(started)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter config")
    parser.add_argument("--device", default="cpu", help="ignored: a CPU contention benchmark")
    parser.add_argument("--threads-contrast", action="store_true",
                        help="also time the pair with every core per run")
    opts = parser.parse_args(argv)
    args = _config(opts.quick)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"bench_contention: {' '.join(args)}; {cores} cores, load average {load:.1f} at start")
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        solo, solo_total = _finish(*_start(args, root / "solo", None), root / "solo")
        pair = _pair(args, root, "pair", None)
        ratio = max(w for w, _ in pair) / solo
        print(f"solo run {solo:.2f} s ({solo_total:.1f} s with start-up); two at once "
              f"{pair[0][0]:.2f} s and {pair[1][0]:.2f} s")
        ok = ratio <= 2.5
        status |= not ok
        print(f"ratio (slower concurrent / solo): {ratio:.2f}x  [bound 2.5x: "
              f"{'ok' if ok else 'FAILED'}]")
        burner = subprocess.Popen([sys.executable, "-c", BURN.format(s=600)])
        try:
            beside, _ = _finish(*_start(args, root / "burn", None), root / "burn")
        finally:
            burner.kill()
            burner.wait()
        reference = (root / "solo" / "metrics.jsonl").read_bytes()
        same = [(root / d / "metrics.jsonl").read_bytes() == reference
                for d in ("burn", "pair0", "pair1")]
        status |= not all(same)
        print(f"metrics.jsonl identical alone / beside a CPU burner ({beside:.2f} s) / both "
              f"concurrent copies: {same}  [{'ok' if all(same) else 'FAILED'}]")
        if opts.threads_contrast:
            wide = _pair(args, root, "wide", cores)
            solo_wide, _ = _finish(*_start(args, root / "solowide", cores), root / "solowide")
            print(f"contrast, {cores} threads per run: solo {solo_wide:.2f} s, two at once "
                  f"{wide[0][0]:.2f} s and {wide[1][0]:.2f} s "
                  f"(ratio {max(w for w, _ in wide) / solo_wide:.2f}x, "
                  f"{max(w for w, _ in wide) / solo:.2f}x the one-thread solo)")
    return status


if __name__ == "__main__":
    sys.exit(main())
