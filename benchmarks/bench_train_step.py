"""Training steps: achieved FLOP/s as a fraction of the matmul peak measured in this process,
and each fast path against the plain path of the same function, timed in the same process.

Workloads (the reference configurations):
- two-layer Birth model, d=256, T=256, batch 512, K=5 fixed triggers, loss on outs >= 2
  (Birth's loss_head_only): plain `model(x)[mask]` vs `model.logits_at(x, mask)`;
- MLP associative memory d=256, m=1024, full batch of n=8192 associations:
  plain `F.cross_entropy(model(x), y)` vs `MLPMemory.loss(x, y)`;
- one-layer factual-recall model at the JAX reference config, batch 1024 (folded default).
Plus the batched recall sampler against a per-sequence Python sampler.

FLOPs are counted by torch's FlopCounterMode (matmuls and attention, forward + backward) on
the path that runs; fused attention is counted through the math kernel (same products), so
masked-out attention entries count as work on both paths. The peak is the fp32 rate of a
2048 x 2048 product with the same thread count, timed right before each step (median of the
pairs), so a step and its peak share the machine's load of that moment.

    python benchmarks/bench_train_step.py [--quick] [--device cuda]
"""

from __future__ import annotations

import contextlib
import random
import sys

import _common


def _opt_step(params, loss_fn):
    import torch

    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step() -> None:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def birth_steps(device: str, quick: bool):
    """(plain, fast) steps of the two-layer model at Birth's README workload."""
    import torch
    import torch.nn.functional as F

    from factlab.models.two_layer import TwoLayerConfig, TwoLayerModel
    from factlab.tasks.bigram_stats import load_stats
    from factlab.tasks.trigger_bigram import sample_batch

    B, T = 512, 256  # the reference's workload in both modes (quick only repeats less)
    stats = load_stats(None)
    x, y, outs = sample_batch(stats, B, T, 5, fixed_triggers=True,
                              gen=torch.Generator().manual_seed(0))
    x, y, outs = x.to(device), y.to(device), outs.to(device)
    mask = outs >= 2
    model = TwoLayerModel(TwoLayerConfig(d_model=256, final_ffn="none"), stats.n,
                          torch.Generator().manual_seed(0), train_len=T).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    target = y[mask]
    plain = _opt_step(params, lambda: F.cross_entropy(model(x)[mask], target))
    fast = _opt_step(params, lambda: F.cross_entropy(model.logits_at(x, mask), target))
    name = f"two-layer Birth d=256 T={T} B={B} loss_on=head ({mask.float().mean():.0%} of pos)"
    return name, plain, fast


def memory_steps(device: str, quick: bool):
    """(plain, fast) steps of the MLP memory d=256, m=1024 on n associations, full batch."""
    import torch
    import torch.nn.functional as F

    from factlab.models.memories import MLPMemory
    from factlab.runtime import make_generator

    n = 8192
    model = MLPMemory(n, n, 256, 1024, make_generator(0)).to(device)
    x = torch.arange(n, device=device)
    params = list(model.parameters())
    plain = _opt_step(params, lambda: F.cross_entropy(model(x), x))
    fast = _opt_step(params, lambda: model.loss(x, x))
    return f"MLP memory d=256 m=1024 n={n}", plain, fast


def recall_step(device: str, quick: bool):
    """One-layer recall model at the JAX reference config, batch 1024 (the folded default)."""
    import torch.nn.functional as F
    from bench_recall import build

    from factlab.runtime import make_generator
    from factlab.tasks.factual_recall import sample_factual_recall

    model, kb, task = build(device)
    gen = make_generator(0)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss():
        tokens, y, _, _ = sample_factual_recall(kb, 1024, gen, task.seq_len, task.noise,
                                                device=device)
        return F.cross_entropy(model(tokens), y)

    return _opt_step(params, loss)


def count_flops(step) -> int:
    """FLOPs of one step, attention counted through the math kernel (see the module doc)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ctx = sdpa_kernel(SDPBackend.MATH) if SDPBackend is not None else contextlib.nullcontext()
    with ctx:
        return _common.count_flops(step)


def python_sampler(kb, batch: int, rng: random.Random, T: int, n_noise: int):
    """The sampler baseline: one prompt at a time, token by token, in Python."""
    import torch

    S, R = kb.n_subjects, kb.n_relations
    rows, answers = [], []
    for _ in range(batch):
        s, r = rng.randrange(S), rng.randrange(R)
        seq = [S + R + rng.randrange(n_noise) for _ in range(T)]
        ps, pr = rng.sample(range(T - 1), 2)
        seq[ps], seq[pr], seq[T - 1] = s, S + r, S + R + n_noise
        rows.append(seq)
        answers.append(int(kb.answers[s, r]))
    return torch.tensor(rows), torch.tensor(answers)


def main(argv: list[str] | None = None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    device = args.device
    reps = 2 if args.quick else 5
    _common.header("bench train_step: training steps vs the measured matmul peak", device)
    pairs = []
    for make in (birth_steps, memory_steps):
        name, plain, fast = make(device, args.quick)
        row = {}
        for kind, step in (("plain", plain), ("fast", fast)):
            flops = count_flops(step)
            seconds, peak = _common.paired_timeit(step, device, reps=reps)
            row[kind] = (flops, seconds, peak)
            print(_common.mfu_line(f"{name} [{kind}]", flops, seconds, peak)
                  + f" ({peak / 1e9:.1f} GFLOP/s)", flush=True)
        (pf, ps, _), (ff, fs, _) = row["plain"], row["fast"]
        print(_common.ratio_line(f"{name}: fast steps/s", 1 / fs, "plain (same run)", 1 / ps,
                                 " steps/s") + f"; FLOPs {pf / ff:.2f}x fewer", flush=True)
        pairs.append((name, row))
    step = recall_step(device, args.quick)
    flops = count_flops(step)
    seconds, peak = _common.paired_timeit(step, device, reps=reps)
    print(_common.mfu_line("one-layer recall B=1024 (folded)", flops, seconds, peak)
          + " (launch-bound: tiny products)", flush=True)
    from bench_recall import build

    from factlab.runtime import make_generator
    from factlab.tasks.factual_recall import sample_factual_recall

    _, kb, task = build("cpu")
    gen, rng, batch = make_generator(0), random.Random(0), 1024
    fast = _common.timeit(lambda: sample_factual_recall(kb, batch, gen, task.seq_len,
                                                        task.noise), reps=reps)
    slow = _common.timeit(lambda: python_sampler(kb, batch, rng, task.seq_len, task.noise),
                          warmup=1, reps=reps)
    print(_common.ratio_line("recall sampler (batched torch)", batch / fast,
                             "per-sequence Python sampler (same run)", batch / slow,
                             " prompts/s"))
    print(f"  peak resident memory of this process: {_common.peak_rss_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
