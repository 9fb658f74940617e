"""Sweep throughput: the same sweep with 1 local worker (the baseline) and with N workers.

Both runs start from empty directories, so worker start-up (spawn + import torch) is counted.
The two results tables must be identical (the table does not depend on the launcher).
Target (issue 6): N = 2 workers on 2 cores >= 1.6x faster than 1 worker.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import _common


def main(argv: list[str] | None = None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv, lambda p: (
        p.add_argument("--workers", type=int, default=0, help="N (default: cores)"),
        p.add_argument("--experiment", default="",
                       help="default: capacity-linear (quick) or capacity-mlp (full)"),
        p.add_argument("--rounds", type=int, default=0, help="repeats (default 1, full 2)")))
    from factlab.launchers import physical_cores
    from factlab.runs.sweep import plan_sweep, run_sweep

    n = args.workers or physical_cores()
    args.rounds = args.rounds or (1 if args.quick else 2)
    # full mode: 8 capacity-mlp cells of ~5-20 s each (idle machine), so worker start-up
    # (spawn + import torch, ~1-2 s) and figures are amortised
    args.experiment = args.experiment or ("capacity-linear" if args.quick else "capacity-mlp")
    grid = (["d=6,8,10", "seeds=[0]", "tolerance=1.3", "train.steps=300"] if args.quick
            else ["d=11,16,22,32", "seeds=[0]", "tolerance=1.1"])
    seeds = "0-1"
    _common.header(f"bench sweep: {args.experiment} {' '.join(grid)} --seeds {seeds}, "
                   f"1 vs {n} workers", "cpu")
    times: dict[int, float] = {}
    tables: dict[int, str] = {}
    # ABBA order over `rounds`, best time per setting: the machine's load drifts
    order = [1, n, n, 1][: 2 * args.rounds] if args.rounds <= 2 else [1, n] * args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        for k, workers in enumerate(order):
            out = Path(tmp) / f"w{workers}-{k}"
            sweep = plan_sweep(args.experiment, grid, seeds=seeds, out=out)
            start = time.perf_counter()
            result = run_sweep(sweep, launcher="local", workers=workers, quiet=True,
                               figure=False)
            wall = time.perf_counter() - start
            times[workers] = min(wall, times.get(workers, float("inf")))
            tables[workers] = (out / "results.csv").read_text()
            print(f"  {workers} worker(s): {len(sweep.cells)} cells in {wall:.1f} s "
                  f"({result.counts})", flush=True)
    print(_common.ratio_line(f"throughput with {n} workers", 1 / times[n], "1 worker",
                             1 / times[1], " sweeps/s"))
    print(f"  tables identical: {tables[1] == tables[n]}")
    return 0 if tables[1] == tables[n] else 1


if __name__ == "__main__":
    sys.exit(main())
