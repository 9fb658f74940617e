"""Ensembles vs loops: N seeds of a tiny model trained as one stacked model vs one by one.

1. Capacity-memory probes (`ensemble.train_memories_ensemble` vs `capacity.train_memory` in a
   loop), fixed step count (no early stop), for N = 2, 4, 8, 16 at two sizes.
2. The capacity-linear experiment itself, `ensemble=false` (baseline) vs `ensemble=true`, with
   five seeds (the paper's count); its metrics.jsonl must be identical.
Each line is a ratio against the loop measured in the same process.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import _common


def main(argv: list[str] | None = None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    import torch

    from factlab.experiments.base import run_experiment
    from factlab.experiments.capacity import CAPACITY_LINEAR, CapacityConfig
    from factlab.pipelines.capacity_search import train_memories_ensemble
    from factlab.train.recipes import train_memory

    device = torch.device(args.device)
    _common.header("bench ensemble: stacked seeds vs a loop", args.device)
    steps = 100 if args.quick else 300
    base = CapacityConfig()
    cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=steps),
                              threshold=1.0)  # threshold 1.0 + few steps: no early stop
    train_memories_ensemble("linear", 8, 4, 0, 1.0, [0, 1], cfg, device)  # warm-up
    sizes = [("linear", 16, 0, 100), ("mlp", 32, 64, 400)]
    for kind, d, width, n in sizes:
        for members in (2, 4, 8, 16):
            seeds = list(range(members))
            job = (kind, n, d, width, 0.1)
            loop = _common.timeit(lambda: [train_memory(*job, s, cfg, device)
                                           for s in seeds], args.device, warmup=0, reps=3)
            ens = _common.timeit(lambda: train_memories_ensemble(*job, seeds, cfg,
                                                                 device),
                                 args.device, warmup=0, reps=3)
            per = members * steps
            print(_common.ratio_line(f"{kind} d={d} n={n} N={members}", per / ens, "loop",
                                     per / loop, " member-steps/s"), flush=True)
    overrides = {"d": "8,11" if args.quick else "8,11,16", "seeds": "0,1,11,111,42"}
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for flag in ("false", "true"):
            exp_cfg = CAPACITY_LINEAR.make_config({**overrides, "ensemble": flag})
            start = time.perf_counter()
            run_experiment(CAPACITY_LINEAR, exp_cfg, out=Path(tmp) / flag, show_progress=False)
            walls[flag] = time.perf_counter() - start
        same = ((Path(tmp) / "false" / "metrics.jsonl").read_text()
                == (Path(tmp) / "true" / "metrics.jsonl").read_text())
    print(_common.ratio_line(f"capacity-linear d={overrides['d']}, 5 seeds, ensemble=true",
                             1 / walls["true"], "ensemble=false", 1 / walls["false"],
                             " runs/s"))
    print(f"  metrics.jsonl identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
