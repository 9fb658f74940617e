"""factlab command line: list | run | show | report | sweep | bench.

Bad input (unknown experiment or key, ill-typed or impossible values, unreadable files) prints
one line to stderr and exits with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        sys.stderr.write(f"factlab: error: {message}\n")
        sys.exit(EXIT_BAD_INPUT)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="factlab", description="A laboratory for how transformers store, "
                     "extract and recall facts.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="every experiment with its claim")
    run = sub.add_parser("run", help="run one experiment: factlab run NAME [key=value ...]")
    run.add_argument("name")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=0.01 seed=3")
    run.add_argument("--out", help="run directory (default runs/NAME/RUN_ID)")
    run.add_argument("--config", help="JSON or YAML file of overrides (applied before key=value)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    report = sub.add_parser("report", help="redraw the figures of a run directory")
    report.add_argument("run_dir")
    show = sub.add_parser("show", help="print the default config of an experiment as JSON")
    show.add_argument("name")
    show.add_argument("overrides", nargs="*")
    _add_sweep_parsers(sub)
    return parser


def _add_sweep_parsers(sub: argparse._SubParsersAction) -> None:
    """The `sweep` and `bench` subcommands (docs/sweeps.md)."""
    sweep = sub.add_parser("sweep", help="run a grid: factlab sweep NAME key=a,b,c k2=1:5 "
                           "--seeds 0-4")
    sweep.add_argument("name")
    sweep.add_argument("overrides", nargs="*",
                       help="key=a,b,c (cells), key=1:5 (inclusive range), key=[8,11] (one "
                            "tuple value), key=v (fixed)")
    sweep.add_argument("--seeds", help="seeds to sweep, e.g. 0-4 or 0,3,7")
    sweep.add_argument("--workers", "--max-workers", type=int, dest="workers",
                       help="parallel workers (default: one per core)")
    sweep.add_argument("--launcher", default="local",
                       choices=["local", "serial", "ray", "submitit"])
    sweep.add_argument("--out", help="sweep directory (default runs/NAME-sweep)")
    sweep.add_argument("--config", help="JSON or YAML file of fixed overrides")
    sweep.add_argument("--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, "
                       "else start a local Ray)")
    sweep.add_argument("--cluster", help="submitit cluster: slurm, local or debug "
                       "(default: slurm when available)")
    sweep.add_argument("--partition", help="SLURM partition (submitit)")
    sweep.add_argument("--metric", action="append", help="metric column(s) of the trend figure")
    bench = sub.add_parser("bench", help="run the benchmarks in benchmarks/ and print ratios")
    bench.add_argument("names", nargs="*", help="train_step, sweep, ensemble, recall "
                       "(default: all)")
    bench.add_argument("--quick", action="store_true", help="shorter timings")
    bench.add_argument("--device", default="cpu")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from factlab.config import load_config_file
    from factlab.runs.sweep import draw_trend, plan_sweep, run_sweep, summarize

    base = load_config_file(args.config) if args.config else {}
    sweep = plan_sweep(args.name, args.overrides, seeds=args.seeds, out=args.out, base=base)
    options = {}
    if args.launcher == "ray" and args.ray_address:
        options["address"] = args.ray_address
    if args.launcher == "submitit":
        options.update(cluster=args.cluster, slurm_partition=args.partition)
    result = run_sweep(sweep, launcher=args.launcher, workers=args.workers,
                       figure=not args.metric, **options)
    if args.metric:
        result.figure = draw_trend(sweep.out, metrics=args.metric)
    for line in summarize(result):
        print(line)
    return 1 if result.counts.get("error") else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import subprocess

    from factlab.config import ConfigError

    here = Path(__file__).resolve()
    root = Path(os.environ.get("FACTLAB_BENCHMARKS", here.parents[2] / "benchmarks"))
    if not root.is_dir():
        raise ConfigError(f"bench: no benchmarks folder at {root}; run from a factlab checkout "
                          "or set FACTLAB_BENCHMARKS")
    known = sorted(p.stem.removeprefix("bench_") for p in root.glob("bench_*.py"))
    names = args.names or known
    for name in names:
        if name not in known:
            raise ConfigError(f"bench: unknown benchmark {name!r}; available: {', '.join(known)}")
    status = 0
    for name in names:
        script = root / f"bench_{name}.py"
        text = script.read_text()
        common = "_common.parse_args" in text  # scripts on the shared argument parser
        cmd = [sys.executable, str(script)]
        if common or "--device" in text:
            cmd += ["--device", args.device]
        if args.quick and (common or "--quick" in text):
            cmd.append("--quick")
        print(f"== bench {name}", flush=True)
        status = max(status, subprocess.run(cmd).returncode)
    return status


def _cmd_list() -> int:
    from factlab.experiments import all_experiments

    experiments = all_experiments()
    width = max(len(exp.name) for exp in experiments)
    for exp in experiments:
        print(f"{exp.name:{width}s}  {exp.claim}")
    return 0


def _resolve(name: str, overrides: Sequence[str], config_file: str | None):
    from factlab.config import load_config_file, parse_override_args
    from factlab.experiments import get_experiment

    exp = get_experiment(name)
    values = load_config_file(config_file) if config_file else {}
    values.update(parse_override_args(list(overrides)))
    return exp, exp.make_config(values)


def _cmd_run(args: argparse.Namespace) -> int:
    from factlab.experiments.base import run_experiment

    exp, cfg = _resolve(args.name, args.overrides, args.config)
    summary = run_experiment(exp, cfg, out=args.out,
                             show_progress=False if args.no_progress else None)
    out = args.out or f"runs/{exp.name}/{summary['run_id']}"
    print(f"run directory: {out}  ({summary['wall_time_s']:.1f} s)")
    print(f"claim:    {summary['claim']}")
    verdict = summary["verdict"].upper()
    print(f"verdict:  {verdict}" + (f" ({summary['reason']})" if summary["reason"] else ""))
    print(f"evidence: {summary['evidence']}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    import json

    from factlab.config import to_dict

    _, cfg = _resolve(args.name, args.overrides, None)
    print(json.dumps(to_dict(cfg), indent=2))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import json

    from factlab.config import ConfigError
    from factlab.experiments import get_experiment

    run_dir = Path(args.run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"report: {str(run_dir)!r} is not a run directory (no config.json)")
    try:
        name = json.loads(config_path.read_text())["experiment"]
    except (json.JSONDecodeError, KeyError):
        raise ConfigError(f"report: {config_path} is malformed") from None
    for path in get_experiment(name).figures(run_dir):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `factlab` console script."""
    os.environ.setdefault("PYTHONHASHSEED", "0")
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command not in ("run", "show", "sweep")
                  or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # overrides given after an option, e.g. `run NAME --out DIR d=32`
        args.overrides = [*args.overrides, *extra]
    from factlab.config import ConfigError
    from factlab.train.loop import DivergenceError

    try:
        if args.command == "list":
            return _cmd_list()
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "show":
            return _cmd_show(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        if args.command == "bench":
            return _cmd_bench(args)
        return _cmd_report(args)
    except ConfigError as err:
        sys.stderr.write(f"factlab: error: {err}\n")
        return EXIT_BAD_INPUT
    except DivergenceError as err:
        sys.stderr.write(f"factlab: {err}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("factlab: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
