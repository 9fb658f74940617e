"""Sweeps: expand a grid over an experiment's config, run every cell, collect one table.

    factlab sweep capacity-linear d=8,11 train.lr=0.1,1 --seeds 0-2

Grid syntax (each `key=value` argument, Hydra-like):

- `key=a,b,c`     one cell per value;
- `key=1:5`       the integers 1..5, both ends included (`1:9:2` steps by 2); ranges and plain
                  values mix: `key=1:3,10`;
- `key=[8,11]`    ONE value, for tuple-typed fields (capacity's `d`): brackets keep the commas
                  inside; `key=[8,11],[16,22]` is two cells, each a tuple;
- `key=v`         a fixed override for every cell;
- `--seeds 0-4`   one cell per seed (`seeds=N`) over 0..4 (also `0,3,7` or `0-2,9`).

A tuple-typed field given a bare comma list therefore expands into one-element tuples:
`d=8,11` is two cells with `d=(8,)` and `d=(11,)`.

Every cell is an ordinary run in `<out>/<run_id>` (run_experiment writes config.json,
metrics.jsonl and, last, summary.json). Resuming is skipping: a cell whose directory holds a
summary.json that parses is never run again; any other cell (a torn summary included) is
(re)run from scratch. A cell that raises
writes `error.json` and the others go on. After the launcher finishes (also after Ctrl-C) the
table `<out>/results.csv` (and `results.parquet` when pyarrow is installed) is rebuilt from
the run directories through a temporary file and a rename, so it is never torn and has exactly
one row per cell of the sweep, in the tidy layout of `factlab.store.table` (plain values in
every cell, per-value and list metrics as rows of `<out>/metrics.csv`). Wall times stay in the
run directories, so the tables are a pure function of the configs, whichever launcher ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from factlab.config import ConfigError, parse_override_args, to_dict
from factlab.experiments import REGISTRY, get_experiment
from factlab.experiments.base import Experiment, run_experiment
from factlab.launchers import format_exception, make_launcher
from factlab.report.trend import draw_trend
from factlab.store.run_dir import run_id, summary_ok, write_json_atomic
from factlab.store.table import (  # re-exported: the table API lives in store.table
    ERROR,
    LONG,
    MANIFEST,
    TABLE,
    collect_rows,
    read_table,
    write_table,
)

__all__ = ["LONG", "TABLE", "collect_rows", "draw_trend", "read_table", "write_table"]

_RANGE = re.compile(r"^(-?\d+):(-?\d+)(?::(\d+))?$")
MAX_AXIS = 10_000  # values of one axis (or seeds); a larger grid is a typo, not a plan
USER_MODULES = "FACTLAB_ALLOW_MODULES"  # =1: `sweep module:attr` may import a user module


# ---------------------------------------------------------------------------------------------
# grid expansion


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: "[8,11],[16,22]" -> ["[8,11]", "[16,22]"].

    Strict: brackets must balance, not nest, and wrap a whole item (`[8,11` or `8]` or
    `[8]x` is a `ConfigError`, not a guess).
    """
    items, depth, current = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if depth < 0 or depth > 1:
            raise ConfigError(f"unbalanced or nested brackets in {text!r}; write one tuple "
                              "value as [8,11], several as [8,11],[16,22]")
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise ConfigError(f"unbalanced brackets in {text!r}; write one tuple value as [8,11]")
    items.append("".join(current))
    items = [i.strip() for i in items]
    for item in items:
        if any(c in item for c in "[]()") and not (item[:1] in "[(" and item[-1:] in "])"):
            raise ConfigError(f"brackets must wrap a whole value, got {item!r} in {text!r}")
    return items


def parse_axis(key: str, raw: str) -> list[str]:
    """The values of one `key=raw` argument as strings (parsed by the config later)."""

    values: list[str] = []
    try:
        items = split_top_level(raw)
    except ConfigError as err:
        raise ConfigError(f"{key}: {err}") from None
    for item in items:
        if not item:
            raise ConfigError(f"{key}: empty value in {raw!r}")
        match = _RANGE.match(item)
        if match:
            lo, hi, step = int(match[1]), int(match[2]), int(match[3] or 1)
            if step < 1 or hi < lo:
                raise ConfigError(f"{key}: bad range {item!r}; use lo:hi or lo:hi:step "
                                  "with lo <= hi and step >= 1 (both ends included)")
            if (hi - lo) // step + 1 > MAX_AXIS:
                raise ConfigError(f"{key}: range {item!r} has more than {MAX_AXIS} values")
            values += [str(v) for v in range(lo, hi + 1, step)]
        else:
            values.append(item)
    return values


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' and '0-2,9' also work."""

    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ConfigError(f"--seeds: expected e.g. 0-4 or 0,1,5, got {text!r}")
        lo = int(match[1])
        hi = int(match[2]) if match[2] is not None else lo
        if hi - lo + 1 > MAX_AXIS:
            raise ConfigError(f"--seeds: {part!r} has more than {MAX_AXIS} seeds")
        seeds += [s for s in range(lo, hi + 1) if s not in set(seeds)]
    return seeds


def expand_grid(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    """Cartesian product of the axes, the first key varying slowest."""
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


@dataclasses.dataclass
class Cell:
    """One grid point: its overrides, resolved config and run id."""

    overrides: dict[str, str]
    config: dict[str, Any]
    run_id: str


@dataclasses.dataclass
class Sweep:
    """An expanded sweep: the experiment, the axes, the cells and the output folder."""

    target: str  # a registry name or "module:attribute"
    name: str  # the experiment's name
    fixed: dict[str, str]
    axes: dict[str, list[str]]
    cells: list[Cell]
    out: Path

    def run_dir(self, cell: Cell) -> Path:
        return self.out / cell.run_id


def load_experiment(target: str) -> Any:
    """A registered experiment by name; an `Experiment` by "module:attribute" only on opt-in.

    Importing a module runs its code, so a sweep runs registered experiments unless the user
    sets FACTLAB_ALLOW_MODULES=1 (docs/reliability.md); the object must be an `Experiment`.
    """

    if target in REGISTRY or ":" not in target:
        return get_experiment(target)
    if os.environ.get(USER_MODULES) != "1":
        raise ConfigError(f"unknown experiment {target!r}; a sweep runs registered experiments "
                          f"(factlab list); set {USER_MODULES}=1 to import a module:attribute")
    module, attr = target.split(":", 1)
    try:
        exp = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load experiment {target!r}: {err}") from None
    if not isinstance(exp, Experiment):
        raise ConfigError(f"{target!r} is a {type(exp).__name__}, not a factlab Experiment")
    return exp


def plan_sweep(target: str, args: Sequence[str] = (), seeds: str | Sequence[int] | None = None,
               out: str | Path | None = None, base: dict[str, Any] | None = None) -> Sweep:
    """Expand `key=values` arguments (and seeds) into validated cells of experiment `target`.

    Every cell's config is built and validated here, so a bad key or value stops the sweep
    with one `ConfigError` line before anything runs.
    """

    exp = load_experiment(target)
    fixed: dict[str, str] = {k: str(v) for k, v in (base or {}).items()}
    axes: dict[str, list[str]] = {}
    for key, raw in parse_override_args(list(args)).items():
        values = parse_axis(key, raw)
        if len(values) == 1:
            fixed[key] = values[0]
            axes.pop(key, None)
        else:
            axes[key] = values
            fixed.pop(key, None)
    if seeds is not None:
        given = [k for k in ("seed", "seeds") if k in parse_override_args(list(args))]
        if given:
            raise ConfigError(f"{given[0]}= and --seeds given together; use one of them")
        seed_list = parse_seeds(seeds) if isinstance(seeds, str) else [int(s) for s in seeds]
        fixed.pop("seed", None)
        fixed.pop("seeds", None)
        axes.pop("seed", None)
        axes.pop("seeds", None)
        axes["seeds"] = [str(s) for s in seed_list]
    cells: list[Cell] = []
    seen: set[str] = set()
    for point in expand_grid(axes):
        overrides = {**fixed, **point}
        try:
            cfg = exp.make_config(overrides)
        except ConfigError as err:
            where = " ".join(f"{k}={v}" for k, v in point.items()) or "the base config"
            raise ConfigError(f"{err} (in cell {where})") from None
        config = to_dict(cfg)
        rid = run_id(config)
        if rid not in seen:  # e.g. `d=8,8`: one cell
            seen.add(rid)
            cells.append(Cell(overrides, config, rid))
    out_dir = Path(out) if out is not None else Path("runs") / f"{exp.name}-sweep"
    return Sweep(target, exp.name, fixed, axes, cells, out_dir)


# ---------------------------------------------------------------------------------------------
# running one cell (in a worker)


def _lock(run_dir: Path) -> Any:
    """An exclusive non-blocking lock on the run directory: the open file, or None if held."""
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process guard
        return True
    fh = open(run_dir / ".lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def run_cell(task: dict[str, Any]) -> dict[str, Any]:
    """Run one cell into task["run_dir"]; never raises for a failure of the run itself.

    Returns {"status": "done" | "skipped" | "error" | "busy", "run_id", ...}. "busy" means
    another live process holds the cell's lock (e.g. a job still running from an earlier,
    interrupted driver); it is left to finish there.
    """

    run_dir = Path(task["run_dir"])
    rid = task["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    if summary_ok(run_dir):
        return {"status": "skipped", "run_id": rid}
    lock = _lock(run_dir)
    if lock is None:
        return {"status": "busy", "run_id": rid}
    try:
        if summary_ok(run_dir):  # finished by someone else while we waited
            return {"status": "skipped", "run_id": rid}
        (run_dir / ERROR).unlink(missing_ok=True)
        try:

            exp = load_experiment(task["target"])
            cfg = exp.make_config(task["overrides"])
            if run_id(to_dict(cfg)) != rid:
                raise RuntimeError(f"config resolves to run id {run_id(to_dict(cfg))}, "
                                   f"not {rid}; did the experiment's defaults change?")
            summary = run_experiment(exp, cfg, out=run_dir, show_progress=False)
            return {"status": "done", "run_id": rid, "wall_time_s": summary["wall_time_s"]}
        except Exception as err:
            info = format_exception(err)
            write_json_atomic(run_dir / ERROR, {"run_id": rid, **info})
            return {"status": "error", "run_id": rid,
                    "error": f"{info['type']}: {info['message']}".splitlines()[0]}
    finally:
        if hasattr(lock, "close"):
            lock.close()


# ---------------------------------------------------------------------------------------------
# the driver


@dataclasses.dataclass
class SweepResult:
    """What a sweep ended with."""

    sweep: Sweep
    counts: dict[str, int]  # status -> number of cells in the table
    table: Path
    figure: Path | None
    wall_time_s: float


def write_manifest(sweep: Sweep) -> None:
    """Record the sweep's cells in <out>/sweep.json (what the table is built from)."""

    sweep.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(sweep.out / MANIFEST, {
        "experiment": sweep.name, "target": sweep.target, "fixed": sweep.fixed,
        "axes": sweep.axes,
        "cells": [{"run_id": c.run_id, "overrides": c.overrides, "config": c.config}
                  for c in sweep.cells]})


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def run_sweep(sweep: Sweep, launcher: str = "local", workers: int | None = None,
              quiet: bool = False, figure: bool = True, **launcher_options: Any) -> SweepResult:
    """Run the unfinished cells of `sweep` with `launcher`, then rebuild table and figure."""

    start = time.perf_counter()
    if launcher == "submitit":
        launcher_options.setdefault("folder", sweep.out / ".submitit")
    runner = make_launcher(launcher, workers, **launcher_options)  # refuses before any write
    write_manifest(sweep)
    todo = [c for c in sweep.cells if not summary_ok(sweep.run_dir(c))]  # torn: rerun
    _log(f"sweep {sweep.name}: {len(sweep.cells)} cells in {sweep.out} "
         f"({len(sweep.cells) - len(todo)} already done, {len(todo)} to run; "
         f"launcher {launcher}, workers {getattr(runner, 'workers', None) or 'auto'})", quiet)
    tasks = [{"target": sweep.target, "overrides": c.overrides,
              "run_dir": str(sweep.run_dir(c).resolve()), "run_id": c.run_id} for c in todo]
    try:
        for k, (task, result) in enumerate(runner.run(run_cell, tasks), 1):
            note = result.get("error") or (f"{result['wall_time_s']:.1f} s"
                                           if "wall_time_s" in result else "")
            _log(f"  [{k}/{len(tasks)}] {task['run_id']} {result['status']} {note}".rstrip(),
                 quiet)
    finally:  # also on Ctrl-C: the table reflects what finished
        rows = write_table(sweep.out)
    fig = draw_trend(sweep.out) if figure else None
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return SweepResult(sweep, counts, sweep.out / TABLE, fig,
                       round(time.perf_counter() - start, 2))


def summarize(result: SweepResult) -> Iterable[str]:
    """The closing lines `factlab sweep` prints."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items()))
    yield f"sweep directory: {result.sweep.out}  ({result.wall_time_s:.1f} s)"
    yield f"cells:  {counts}"
    yield f"table:  {result.table}"
    if result.figure is not None:
        yield f"figure: {result.figure}"
    if result.counts.get("error"):
        yield "failed cells keep their traceback in <run_dir>/error.json; rerun to retry them"


def check_metrics(sweep_dir: str | Path, metrics: Sequence[str]) -> list[str]:
    """The `--metric` names as table columns; an unknown one is a `ConfigError` listing the
    known ones (a metric `acc` may be written without its `metrics.` prefix)."""
    sweep_dir = Path(sweep_dir)
    rows = read_table(sweep_dir / TABLE) if (sweep_dir / TABLE).exists() else []
    known = {k for r in rows for k in r}
    if (sweep_dir / LONG).exists():
        known |= {f"metrics.{r['metric']}" for r in read_table(sweep_dir / LONG) if "metric" in r}
    out = []
    for metric in metrics:
        name = metric if metric in known else f"metrics.{metric}"
        if name not in known:
            shown = ", ".join(sorted(k for k in known if k.startswith("metrics."))[:12])
            raise ConfigError(f"--metric: unknown metric {metric!r}; the table has: "
                              f"{shown or 'no metrics yet'}")
        out.append(name)
    return out


def sweep_hash(sweep: Sweep) -> str:
    """A short digest of the sweep's cells (stable across launchers and reruns)."""
    blob = json.dumps(sorted(c.run_id for c in sweep.cells)).encode()
    return hashlib.sha256(blob).hexdigest()[:8]

