"""IC-recall N_min search: probes per second, and batched against one-at-a-time evaluation.

One run measures, on one fixture (constructed memory, S subjects, d, D):

1. probes/s of `pipelines.ic_finetune.probe_n` as the sweep runs it (one probe at a time,
   the lr grid inside the probe trained one lr after the other);
2. the test enumeration of a probe (every triplet, held-out ones in several contexts) in
   large chunks (the default, `Protocol.eval_chunk`) against one prompt at a time on the
   same model, and prints the ratio. The stacked lr-grid/seed ensemble is not implemented
   for this family, so there is no batched-training number to print.

    python benchmarks/bench_ic_search.py [--subjects 256] [--d 128] [--n 1024]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("FACTLAB_PROGRESS", "0")

import torch

from factlab.models.ic_model import ICModelConfig, ICRecallModel
from factlab.pipelines.ic_finetune import Protocol, make_splits, probe_n
from factlab.pipelines.ic_memories import MemoryConfig, build_setup
from factlab.probes.metrics import forward_chunks
from factlab.tasks.ic_recall import ICTaskConfig
from factlab.train.loop import TrainConfig


def main() -> None:
    """Parse the options, time both measurements, print them and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=256)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--answers", type=int, default=2)
    ap.add_argument("--n", type=int, default=1024, help="prompts of the timed probe")
    ap.add_argument("--single", type=int, default=512,
                    help="prompts evaluated one at a time (the rest is extrapolated)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    task = ICTaskConfig(n_subjects=args.subjects, n_answers=args.answers)
    setup = build_setup(MemoryConfig(), task, args.d, 0, dev)
    proto = Protocol(min_steps=200, patience=4, n_val=256)
    tcfg = TrainConfig(optimizer="adam", batch_size=256, eval_every=25)
    start = time.perf_counter()
    outcome, res = probe_n(setup, ICModelConfig(d_model=args.d), tcfg, proto, args.n, (0.01,),
                           0, dev, 0.99)
    probe_s = time.perf_counter() - start
    print(f"one probe (N={args.n}, S={args.subjects}, d={args.d}): {probe_s:.2f} s, "
          f"{res.steps} steps, {outcome}; {1 / probe_s:.3f} probes/s")

    splits = make_splits(setup, proto, args.n, 0, dev)
    model = ICRecallModel(ICModelConfig(d_model=args.d), setup.W_E, setup.W_U, setup.memory,
                          torch.Generator().manual_seed(0), n_pos=task.seq_len).to(dev)
    tokens = torch.cat([splits.test_seen["tokens"]] + (
        [splits.test_heldout["tokens"]] if splits.test_heldout is not None else []))
    start = time.perf_counter()
    forward_chunks(model, tokens, proto.eval_chunk)
    batched = time.perf_counter() - start
    m = min(args.single, len(tokens))
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(m):
            model(tokens[i:i + 1])
    single = (time.perf_counter() - start) * len(tokens) / m
    print(f"test enumeration of {len(tokens)} prompts: chunks of {proto.eval_chunk} "
          f"{batched:.3f} s, one at a time {single:.3f} s (extrapolated from {m}); "
          f"batched is {single / batched:.1f}x faster")


if __name__ == "__main__":
    main()
