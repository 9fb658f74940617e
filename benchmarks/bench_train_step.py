"""Achieved FLOP/s of training steps as a fraction of this machine's measured matmul peak,
and the batched recall sampler against a per-sequence Python sampler.

Baselines, measured in the same process: the fp32 matmul rate of a 2048 x 2048 product with
the same thread count ("peak"), and a sampler that builds one prompt at a time in Python.
FLOPs are counted by torch's FlopCounterMode (matmuls, forward + backward), so they are the
model's arithmetic, not an estimate.
"""

from __future__ import annotations

import random
import sys

import _common


def _step_fn(model, params, batch_fn, loss_fn):
    import torch

    opt = torch.optim.Adam(params, lr=1e-3)
    data = batch_fn()

    def step() -> None:
        loss = loss_fn(model(data[0]), data[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def recall_step(device: str, quick: bool):
    """One-layer recall model at the JAX reference config, batch 1024."""
    import torch.nn.functional as F
    from bench_recall import build

    from factlab.runtime import make_generator
    from factlab.tasks.factual_recall import sample_factual_recall

    model, kb, task = build(device)
    batch = lambda: sample_factual_recall(kb, 1024, make_generator(0), task.seq_len,
                                          task.noise, device=device)[:2]
    params = [p for p in model.parameters() if p.requires_grad]
    return _step_fn(model, params, batch, F.cross_entropy)


def memory_step(device: str, quick: bool):
    """MLP associative memory d=256, m=1024, trained full-batch on n=8192 associations."""
    import torch
    import torch.nn.functional as F

    from factlab.models.memories import MLPMemory
    from factlab.runtime import make_generator

    n = 4096 if quick else 8192
    model = MLPMemory(n, n, 256, 1024, make_generator(0)).to(device)
    x = torch.arange(n, device=device)
    return _step_fn(model, list(model.parameters()), lambda: (x, x), F.cross_entropy)


def birth_step(device: str, quick: bool):
    """Two-layer Birth model (d=256, T=256, vocab 65) if models/two_layer.py is present."""
    import torch
    import torch.nn.functional as F

    from factlab.models.two_layer import TwoLayerConfig, TwoLayerModel
    from factlab.runtime import make_generator

    batch, T = (8, 256) if quick else (32, 256)
    model = TwoLayerModel(TwoLayerConfig(d_model=256), 65, make_generator(0),
                          train_len=T).to(device)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 65, (batch, T + 1), generator=gen).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = lambda logits, y: F.cross_entropy(logits.flatten(0, 1), y.flatten())
    return _step_fn(model, params, lambda: (tokens[:, :-1], tokens[:, 1:]), loss)


def python_sampler(kb, batch: int, rng: random.Random, T: int, n_noise: int):
    """The baseline: one prompt at a time, token by token, in Python."""
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
    reps = 3 if args.quick else 5
    _common.header("bench train_step: FLOP/s of training steps vs measured matmul peak", device)
    peak = _common.matmul_peak(device, reps=reps)
    print(f"  matmul peak (2048^2 fp32): {peak / 1e9:.1f} GFLOP/s")
    rows = []
    for name, make in (("one-layer recall B=1024", recall_step),
                       ("MLP memory d=256 m=1024", memory_step),
                       ("two-layer Birth d=256 T=256", birth_step)):
        try:
            step = make(device, args.quick)
        except Exception as err:
            print(f"  {name}: skipped ({type(err).__name__}: {err})")
            continue
        flops = _common.count_flops(step)
        seconds = _common.timeit(step, device, warmup=2, reps=reps)
        rows.append((name, flops, seconds))
        print(f"  {name}: {flops / 1e9:.2f} GFLOP/step, {seconds * 1e3:.1f} ms/step, "
              f"{flops / seconds / 1e9:.1f} GFLOP/s", flush=True)
    # the peak again after the steps: on a shared machine the load drifts; use the higher one
    peak = max(peak, _common.matmul_peak(device, reps=reps))
    print(f"  matmul peak, best of before/after: {peak / 1e9:.1f} GFLOP/s")
    for name, flops, seconds in rows:
        print(f"  {name}: {flops / seconds / peak:.0%} of matmul peak")
    # sampler: batched torch ops vs one prompt at a time in Python
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
                             "per-sequence Python sampler", batch / slow, " prompts/s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
