"""Side by side: each reference implementation's own entry point, then factlab's equivalent,
one after the other in this run, with ratios of what was measured here.

References (their code is run from a checkout you provide, never copied into factlab):
- Birth (arXiv 2306.00802), github.com/albietz/transformer-birth: `ihead_basic_main.py` with
  its README command line (2 layers, d=256, T=256, batch 512, K=5 fixed triggers, loss on
  outs >= 2, SGD 0.03, probes every 5 iterations) and `max_iters=N`. It calls `.cuda()`; on a
  machine without CUDA it runs under a shim that turns `.cuda()` into a no-op (its files are
  untouched). Needs torch, numpy and omegaconf in its python.
  factlab: `factlab run induction-head` with the same knobs and `train.steps=N`.
- Factual recall (arXiv 2412.06538), github.com/eshnich/factual-recall-iclr: `run.run(8, 8,
  64, 128, 32, 32, 8, 1e-2)`, which trains until test accuracy > 0.99 (checked every 128
  steps). Needs jax, flax, optax, simple_pytree in its python.
  factlab: `factlab run recall-tradeoff` at the same configuration (bench_recall.JAX_CONFIG).

Measured per side: process wall time (launch to exit) and the child's peak RSS (wait4 on the
process itself; worker processes it spawns are not included). For Birth, iterations per
second = N / process wall (evals, probes, sampler and start-up included on both sides).
For recall, the process runs to 99%, so its wall time is the time to 99%.

    python benchmarks/compare_references.py --birth PATH [--birth-python PY] \\
        --recall PATH [--recall-python PY] [--iters 30] [--device cpu]

Without a path the reference is skipped (it says so) and factlab's own numbers are printed
alone, with no ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import _common
from bench_recall import JAX_CONFIG, end_to_end

BIRTH_ARGS = ["log_probes=True", "eval_delta=5", "loss_head_only=True", "data_args.k=5",
              "data_args.fixed_special_toks=True", "optim_args.use_sgd=True",
              "optim_args.learning_rate=0.03", "optim_args.weight_decay=1e-4",
              "optim_args.batch_size=512", "model_args.final_ffn=False",
              "model_args.freeze_embeddings=True", "model_args.freeze_output=True",
              "model_args.dim=256"]
# factlab's induction-head with Birth's knobs (the birth_fig3 preset, spelled out)
FACTLAB_BIRTH = ["model.d_model=256", "task.seq_len=256", "train.batch_size=512",
                 "task.n_triggers=5", "task.fixed_triggers=true", "model.final_ffn=none",
                 "loss_on=head", "train.optimizer=sgd", "train.lr=0.03", "train.momentum=0.9",
                 "train.weight_decay=1e-4", "train.eval_every=5", "eval_batch=512", "seeds=0"]
# run a script as __main__ with .cuda() as a no-op, leaving the script's files untouched
CUDA_SHIM = ("import runpy, sys, torch\n"
             "if not torch.cuda.is_available():\n"
             "    torch.Tensor.cuda = lambda self, *a, **k: self\n"
             "    torch.nn.Module.cuda = lambda self, *a, **k: self\n"
             "sys.argv = sys.argv[1:]\n"
             "sys.path.insert(0, '.')\n"
             "runpy.run_path(sys.argv[0], run_name='__main__')\n")
JAX_RUN = "import sys; sys.path.insert(0, '.'); from run import run; run(8, 8, 64, 128, 32, 32, 8, 1e-2)"


def thread_env(threads: int) -> dict[str, str]:
    """Environment that fixes both sides to `threads` intra-op threads (0: leave as is)."""
    if not threads:
        return {}
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "FACTLAB_THREADS": n}


ENV: dict[str, str] = {}  # set from --threads in main(); applied to every child


def birth_reference(path: Path, python: str, iters: int,
                    extra: list[str] | None = None) -> dict[str, float]:
    """Birth's ihead_basic_main.py for `iters` iterations: wall, RSS, it/s."""
    cmd = [python, "-c", CUDA_SHIM, "ihead_basic_main.py", f"max_iters={iters}", *BIRTH_ARGS,
           *(extra or [])]
    wall, rss, code, log = _common.run_process(cmd, cwd=path, env=ENV)
    if code != 0:
        raise RuntimeError(f"Birth reference failed ({code}):\n{log[-2000:]}")
    return {"wall": wall, "rss_gb": rss, "it_s": iters / wall, "cpu": _common.run_process.last_cpu}


def birth_factlab(iters: int, device: str) -> dict[str, float]:
    """factlab's induction-head at Birth's knobs for `iters` steps: wall, RSS, it/s."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = _common.python_cmd("-m", "factlab", "run", "induction-head", "--no-progress",
                                 "--force", "--out", str(Path(tmp) / "run"), *FACTLAB_BIRTH,
                                 f"train.steps={iters}", f"device={device}")
        wall, rss, code, log = _common.run_process(cmd, env={"FACTLAB_PROGRESS": "0", **ENV})
    if code != 0:
        raise RuntimeError(f"factlab induction-head failed ({code}):\n{log[-2000:]}")
    return {"wall": wall, "rss_gb": rss, "it_s": iters / wall, "cpu": _common.run_process.last_cpu}


def recall_reference(path: Path, python: str) -> dict[str, float]:
    """The JAX reference's run() to 99%: wall and RSS."""
    wall, rss, code, log = _common.run_process([python, "-c", JAX_RUN], cwd=path, env=ENV)
    if code != 0:
        raise RuntimeError(f"JAX reference failed ({code}):\n{log[-2000:]}")
    return {"wall": wall, "rss_gb": rss, "cpu": _common.run_process.last_cpu,
            "final": log.strip().splitlines()[-1]}


def _side(label: str, r: dict[str, float], rate: bool) -> str:
    extra = f", {r['it_s']:.3f} it/s" if rate else ""
    cpu = f", {r['cpu']:.1f} CPU s" if "cpu" in r else ""
    return f"  {label}: process {r['wall']:.1f} s{extra}{cpu}, peak RSS {r['rss_gb']:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--birth", type=Path, help="checkout of albietz/transformer-birth")
    parser.add_argument("--birth-python", default=sys.executable)
    parser.add_argument("--recall", type=Path, help="checkout of eshnich/factual-recall-iclr")
    parser.add_argument("--recall-python", default=sys.executable)
    parser.add_argument("--iters", type=int, default=30, help="Birth iterations per side")
    parser.add_argument("--birth-arg", action="append", default=[],
                        help="extra key=value for the reference's command line, e.g. "
                             "num_data_workers=2 (its default spawns 60 sampler processes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=("birth", "recall"), default=None)
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads for both sides (default: each side's own)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    for flag, path in (("--birth", args.birth), ("--recall", args.recall)):
        if path is not None and not path.is_dir():
            parser.error(f"{flag} {path}: no such checkout")
    import torch

    ENV.update(thread_env(args.threads))
    _common.header("compare references: reference entry point, then factlab, same run",
                   args.device)
    if ENV:
        print(f"  both sides run with {args.threads} intra-op thread(s)")
    results: dict[str, dict] = {}
    if args.only in (None, "birth"):
        print(f"Birth README configuration, {args.iters} iterations", flush=True)
        if args.birth is None:
            print("  no --birth checkout given: reference not run, no ratio printed")
        else:
            results["birth_reference"] = birth_reference(args.birth, args.birth_python,
                                                         args.iters, args.birth_arg)
            if args.birth_arg:
                print(f"  reference extra arguments: {' '.join(args.birth_arg)}")
            print(_side("reference ihead_basic_main.py", results["birth_reference"], True),
                  flush=True)
        results["birth_factlab"] = birth_factlab(args.iters, args.device)
        print(_side("factlab run induction-head", results["birth_factlab"], True), flush=True)
        if "birth_reference" in results:
            ref, ours = results["birth_reference"], results["birth_factlab"]
            print(_common.ratio_line("factlab it/s", ours["it_s"], "reference (same run)",
                                     ref["it_s"], " it/s"))
            print(f"  CPU seconds per iteration: reference {ref['cpu'] / args.iters:.2f}, "
                  f"factlab {ours['cpu'] / args.iters:.2f} "
                  f"({ref['cpu'] / ours['cpu']:.2f}x less work for factlab)")
            print(f"  peak RSS: factlab {ours['rss_gb']:.2f} GB vs reference "
                  f"{ref['rss_gb']:.2f} GB ({ours['rss_gb'] / ref['rss_gb']:.2f}x)")
    if args.only in (None, "recall"):
        print("Factual recall at the JAX reference configuration, process to 99%", flush=True)
        if args.recall is None:
            print("  no --recall checkout given: reference not run, no ratio printed")
        else:
            results["recall_reference"] = recall_reference(args.recall, args.recall_python)
            print(_side("reference run()", results["recall_reference"], False), flush=True)
        ours = end_to_end(args.device, ENV)
        results["recall_factlab"] = ours
        print(_side("factlab run recall-tradeoff", ours, False)
              + f"; acc {ours['acc']:.3f} at step {ours['steps']}", flush=True)
        if "recall_reference" in results:
            ref = results["recall_reference"]
            print(f"  process time to 99%: factlab {ours['wall']:.1f} s = "
                  f"{ref['wall'] / ours['wall']:.2f}x faster than the reference "
                  f"({ref['wall']:.1f} s, same run)")
            print(f"  CPU seconds to 99%: reference {ref['cpu']:.1f}, factlab {ours['cpu']:.1f}")
            print(f"  peak RSS: factlab {ours['rss_gb']:.2f} GB vs reference "
                  f"{ref['rss_gb']:.2f} GB")
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "factlab_recall_config":
                                         JAX_CONFIG, **results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError) as err:  # a side that failed or a bad path: one message
        print(f"compare_references: {err}", file=sys.stderr)
        sys.exit(2)
