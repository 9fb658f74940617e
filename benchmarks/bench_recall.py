"""The one-layer factual-recall model at the public JAX reference configuration.

H=8, d_h=8, d=64, m=128, S=R=32, D=8, T=32, batch 1024, AdamW lr 1e-2 (wd 0), test set of
1024 prompts checked every 128 steps, stop at 99% (the reference `run()`'s loop).

Measured, all in this run:
- end to end: `factlab run recall-tradeoff` at that configuration (one cell H=8, m=128, one
  seed) as a child process, from launch to exit (imports, sampler, model build, evals, the
  verdict and its figure); steps to 99% and the child's own peak RSS;
- in process: training steps/s of the stock forward (`fold_embed=False`, the baseline) and the
  folded default (`fold_embed=True`: the frozen W_E folds into [H, V, V] score tables), their
  ratio, and that both give the same logits.
It prints no number it did not measure; `compare_references.py` runs the JAX reference itself.

    python benchmarks/bench_recall.py [--quick] [--device cpu]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import _common

# `factlab run` overrides equal to the reference's run(H=8, dh=8, d=64, m=128, S=32, R=32, D=8,
# lr=1e-2): one (heads, width) cell, AdamW without weight decay, eval every 128 steps.
JAX_CONFIG = ["heads=8", "widths=128", "model.d_model=64", "model.d_head=8", "workers=1",
              "task.n_subjects=32", "task.n_relations=32", "task.n_answers=8",
              "task.seq_len=32", "train.optimizer=adamw", "train.lr=0.01",
              "train.weight_decay=0", "train.batch_size=1024", "train.eval_every=128",
              "train.steps=16384", "n_test=1024", "seeds=0"]


def factlab_recall_cmd(out: Path, device: str = "cpu") -> list[str]:
    """The `factlab run` command equivalent to the JAX reference's `run()`."""
    return _common.python_cmd("-m", "factlab", "run", "recall-tradeoff", "--no-progress",
                              "--force", "--out", str(out), *JAX_CONFIG, f"device={device}")


def end_to_end(device: str = "cpu", env: dict[str, str] | None = None) -> dict[str, float]:
    """Run `factlab run` at the JAX config as a child: wall, peak RSS, steps, accuracy."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        wall, rss, code, log = _common.run_process(factlab_recall_cmd(out, device),
                                                   env={"FACTLAB_PROGRESS": "0", **(env or {})})
        if code != 0:
            raise RuntimeError(f"factlab run failed ({code}):\n{log[-2000:]}")
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    cell = next(r for r in rows if r.get("split") == "grid")
    return {"wall": wall, "rss_gb": rss, "steps": cell["steps"], "acc": cell["acc"],
            "cpu": _common.run_process.last_cpu}


def build(device: str, seed: int = 0, fold: bool = True):
    """Model, knowledge base and task config at the reference sizes."""
    from factlab.knowledge import make_knowledge_base
    from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
    from factlab.runtime import make_generator
    from factlab.tasks.factual_recall import RecallTaskConfig

    task = RecallTaskConfig(n_subjects=32, n_relations=32, n_answers=8, seq_len=32)
    kb = make_knowledge_base(32, 32, 8, seed=64)
    cfg = OneLayerConfig(d_model=64, n_heads=8, d_head=8, d_mlp=128, fold_embed=fold)
    model = OneLayerTransformer(cfg, task.vocab_size, kb.n_outputs, make_generator(seed))
    return model.to(device), kb, task


def step_rate(fold: bool, device: str, steps: int, batch: int = 1024, lr: float = 1e-2) -> float:
    """Training steps/s (fresh batch every step, AdamW) of the stock or folded model."""
    import time

    import torch
    import torch.nn.functional as F

    from factlab.runtime import make_generator
    from factlab.tasks.factual_recall import sample_factual_recall

    model, kb, task = build(device, fold=fold)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=0.0)
    gen = make_generator(1)

    def step() -> None:
        tokens, y, _, _ = sample_factual_recall(kb, batch, gen, task.seq_len, task.noise,
                                                device=device)
        loss = F.cross_entropy(model(tokens), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    _common.sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _common.sync(device)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    import torch

    device = args.device
    _common.header("bench recall: one-layer factual recall, JAX reference config", device)
    e2e = end_to_end(device)
    reached = "reached" if e2e["acc"] >= 0.99 else "did NOT reach"
    print(f"  factlab run, launch to exit: {e2e['wall']:.1f} s; {reached} 99% at step "
          f"{e2e['steps']} (acc {e2e['acc']:.3f}); {e2e['cpu']:.1f} CPU s; peak RSS "
          f"{e2e['rss_gb']:.2f} GB", flush=True)
    model, kb, task = build(device, fold=False)
    folded, _, _ = build(device, fold=True)
    from factlab.runtime import make_generator
    from factlab.tasks.factual_recall import sample_factual_recall

    tokens, *_ = sample_factual_recall(kb, 1024, make_generator(0), task.seq_len, task.noise,
                                       device=device)
    with torch.no_grad():
        err = (model(tokens) - folded(tokens)).abs().max().item()
    print(f"  folded vs stock logits: max |diff| = {err:.2e}")
    if err > 1e-3:
        print("  folded path disagrees with the stock model; aborting")
        return 1
    steps = 50 if args.quick else 200
    rates = {}
    for kind in ("stock", "folded", "stock", "folded"):  # ABAB: the load drifts
        rates[kind] = max(rates.get(kind, 0.0), step_rate(kind == "folded", device, steps))
    print(_common.ratio_line("folded step rate", rates["folded"], "stock (same run)",
                             rates["stock"], " steps/s"))
    print(f"  peak resident memory of this process: {_common.peak_rss_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
