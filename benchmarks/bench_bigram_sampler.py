"""Batched trigger-bigram sampler vs a per-sequence Python sampler of the same distribution.

Both draw K random triggers from π_u, uniform outputs, and a T-step chain with the trigger rule
and occurrence counts. The baseline is the plain reading of the task: one Python loop
per sequence and per token (cumulative weights + bisect, as `random.choices` does). Tokens/s of
both are measured in this process; the ratio is printed last.

    OMP_NUM_THREADS=1 python benchmarks/bench_bigram_sampler.py [--B 512] [--T 256] [--K 5]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import time

import torch

from factlab.tasks.bigram_stats import load_stats
from factlab.tasks.trigger_bigram import sample_batch


def python_sampler(unigram: list[float], bigram: list[list[float]], B: int, T: int, K: int,
                   rng: random.Random) -> tuple[list[list[int]], list[list[int]]]:
    """Per-sequence, per-token sampler: returns (z [B][T+1], outs [B][T])."""
    n = len(unigram)
    cum_u = list(itertools.accumulate(unigram))
    cum_b = [list(itertools.accumulate(row)) for row in bigram]
    seqs, counts_all = [], []
    for _ in range(B):
        triggers: list[int] = []
        while len(triggers) < K:  # K distinct draws from π_u
            q = min(bisect.bisect_right(cum_u, rng.random() * cum_u[-1]), n - 1)
            if q not in triggers:
                triggers.append(q)
        outputs = {q: rng.randrange(n) for q in triggers}
        seen = dict.fromkeys(triggers, 0)
        z = [min(bisect.bisect_right(cum_u, rng.random() * cum_u[-1]), n - 1)]
        outs = []
        for _ in range(T):
            cur = z[-1]
            if cur in outputs:
                seen[cur] += 1
                outs.append(seen[cur])
                z.append(outputs[cur])
            else:
                outs.append(0)
                row = cum_b[cur]
                z.append(min(bisect.bisect_right(row, rng.random() * row[-1]), n - 1))
        seqs.append(z)
        counts_all.append(outs)
    return seqs, counts_all


def timed(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Run both samplers and print tokens/s and the ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--B", type=int, default=512)
    parser.add_argument("--T", type=int, default=256)
    parser.add_argument("--K", type=int, default=5)
    parser.add_argument("--baseline-B", type=int, default=512, help="sequences for the baseline")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    stats = load_stats()
    gen = torch.Generator().manual_seed(0)
    sample_batch(stats, 8, 8, args.K, gen=gen)  # warm-up
    t_batched = timed(lambda: sample_batch(stats, args.B, args.T, args.K, gen=gen), args.repeats)
    uni, bi = stats.unigram.tolist(), stats.bigram.tolist()
    rng = random.Random(0)
    t_python = timed(lambda: python_sampler(uni, bi, args.baseline_B, args.T, args.K, rng),
                     args.repeats)
    tps_batched = args.B * args.T / t_batched
    tps_python = args.baseline_B * args.T / t_python
    # sanity: the two samplers draw the same distribution (fraction of outs >= 2 targets)
    _, _, outs = sample_batch(stats, args.B, args.T, args.K, gen=gen)
    _, py_outs = python_sampler(uni, bi, args.baseline_B, args.T, args.K, rng)
    py_frac = sum(o >= 2 for row in py_outs for o in row) / (args.baseline_B * args.T)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"B={args.B} T={args.T} K={args.K}")
    print(f"outs>=2 fraction: batched {float((outs >= 2).float().mean()):.3f}, "
          f"python {py_frac:.3f}")
    print(f"python per-sequence sampler: {tps_python:12,.0f} tokens/s "
          f"({args.baseline_B} sequences in {t_python:.3f} s)")
    print(f"batched torch sampler:       {tps_batched:12,.0f} tokens/s "
          f"({args.B} sequences in {t_batched:.3f} s)")
    print(f"ratio batched / python: {tps_batched / tps_python:.1f}x")


if __name__ == "__main__":
    main()
