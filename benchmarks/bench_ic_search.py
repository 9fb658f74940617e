"""IC-recall N_min search: probes per second, and batched against one-at-a-time evaluation.

One run measures, on one fixture (constructed memory, S subjects, d, D):

1. probes/s of `pipelines.ic_finetune.probe_n` as the sweep runs it (one probe at a time,
   the lr grid inside the probe trained one lr after the other);
2. the test enumeration of a probe (every triplet, held-out ones in several contexts) in
   large chunks (the default, `Protocol.eval_chunk`) against one prompt at a time on the
   same model, and prints the ratio;
3. the training step that dominates a probe, for G members (an lr grid or seeds): G models
   stepped one after the other against one stacked step (each member's attention, then the
   shared frozen memory once on all members' outputs, one Adam step on the summed losses).
   It says whether stacking the members of a probe would pay on this machine; the search
   does not stack them.
4. one size's whole N_min search for two seeds (`pipelines.ic_sweep.run_sweep`, grid ratio
   1.3) with the lr grid at every probe against at each search's first probe only
   (`lr_choice`); the second seed starts from the first one's N_min (the guess), so its probe
   count shows what the guess saves. Skip it with --no-search.

    python benchmarks/bench_ic_search.py [--subjects 256] [--d 128] [--n 1024]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("FACTLAB_PROGRESS", "0")

import _common
import torch

from factlab.models.ic_model import ICModelConfig, ICRecallModel
from factlab.pipelines.ic_finetune import Protocol, make_splits, probe_n
from factlab.pipelines.ic_memories import MemoryConfig, build_setup
from factlab.pipelines.ic_sweep import Arm, ProbeCache, run_sweep
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
    ap.add_argument("--members", type=int, default=3, help="G of the training-step timing")
    ap.add_argument("--steps", type=int, default=30,
                    help="timed training steps (5 repeats, the median kept)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-search", action="store_true", help="skip measurement 4")
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

    loop_s, stacked_s = time_members(setup, splits, args.d, args.members, args.steps, dev)
    print(f"training step, {args.members} members, batch {tcfg.batch_size}: one after the "
          f"other {loop_s * 1e3:.1f} ms, stacked {stacked_s * 1e3:.1f} ms; stacked is "
          f"{loop_s / stacked_s:.2f}x faster")
    if not args.no_search:
        walls = {}
        for choice in ("every_probe", "first_probe"):
            walls[choice], rows = time_search(setup, args.d, dev, choice)
            print(f"search, lr grid at {choice.replace('_', ' ')}: {walls[choice]:.1f} s; "
                  + "; ".join(f"seed {r['seed']}: N_min {r['n_min']} ({r['status']}) in "
                              f"{r['n_probes']} probes" for r in rows))
        print(f"lr grid at the first probe only is "
              f"{walls['every_probe'] / walls['first_probe']:.2f}x faster")


def time_search(setup, d: int, dev: torch.device, lr_choice: str,
                lr_grid: tuple[float, ...] = (0.003, 0.01, 0.03)) -> tuple[float, list[dict]]:
    """Wall seconds and n_min rows of one size's search over seeds 0 and 1 (the quick
    preset's protocol: probes run to patience on validation accuracy)."""
    proto = Protocol(min_steps=2000, patience=8, n_val=256, monitor="acc")
    tcfg = TrainConfig(optimizer="adam", batch_size=256, eval_every=25)
    arm = Arm("qk", (setup.task.n_subjects,), ICModelConfig(d_model=d), tcfg, lr_grid, 64, 8192,
              lambda S: setup)
    with tempfile.TemporaryDirectory() as tmp:
        cache = ProbeCache(Path(tmp) / "probes.jsonl")
        start = time.perf_counter()
        rows = run_sweep([arm], (0, 1), proto, 1.3, 0.99, dev, cache, lambda *a: None, False,
                         lr_choice)
        return time.perf_counter() - start, rows


def time_members(setup, splits, d: int, members: int, steps: int, dev: torch.device,
                 batch: int = 256) -> tuple[float, float]:
    """Seconds per training step of `members` IC models: in a loop, then as one stack."""
    cfg = ICModelConfig(d_model=d, init="small")
    models = [ICRecallModel(cfg, setup.W_E, setup.W_U, setup.memory,
                            torch.Generator().manual_seed(i), n_pos=setup.task.seq_len).to(dev)
              for i in range(members)]
    tokens, answers = splits.train["tokens"][:batch], splits.train["answer"][:batch]
    opts = [torch.optim.Adam(m.trainable(), lr=1e-3) for m in models]

    def loop_step() -> None:
        for m, opt in zip(models, opts):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(tokens), answers).backward()
            opt.step()

    # the frozen memory is shared and its forward is data-dependent (no vmap), so the stack
    # runs each member's attention, then the memory once on all members' outputs
    sopt = torch.optim.Adam([p for m in models for p in m.trainable()], lr=1e-3)
    x = models[0].W_E[tokens]
    memory, W_U = setup.memory, models[0].W_U

    def stacked_step() -> None:
        sopt.zero_grad()
        u = torch.cat([m.blocks[0].attn(x) for m in models])  # [G B, 1, d]
        logits = ((u + memory(u)) @ W_U)[:, -1]
        torch.nn.functional.cross_entropy(logits, answers.repeat(members),
                                          reduction="sum").div(len(answers)).backward()
        sopt.step()

    reps = max(1, steps // 5)
    return (_common.timeit(loop_step, str(dev), reps=5, inner=reps),
            _common.timeit(stacked_step, str(dev), reps=5, inner=reps))


if __name__ == "__main__":
    main()
