"""Sweeps: expand a grid over an experiment's config, run every cell, collect one table.

    factlab sweep capacity-linear d=8,11 train.lr=0.1,1 --seeds 0-2

Grid syntax (each `key=value` argument; specs/ecosystem.md §1, Hydra-like):

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
metrics.jsonl and, last, summary.json). Resuming is skipping: a cell whose directory holds
summary.json is never run again; any other cell is (re)run from scratch. A cell that raises
writes `error.json` and the others go on. After the launcher finishes (also after Ctrl-C) the
table `<out>/results.csv` (and `results.parquet` when pyarrow is installed) is rebuilt from
the run directories through a temporary file and a rename, so it is never torn and has exactly
one row per cell of the sweep: `run_id`, `status` (done | error | pending), the flattened
config (dotted names), `holds`, `evidence`, `metrics.<dotted>` and `error`. Wall times stay in
the run directories, so the table is a pure function of the configs, whichever launcher ran.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib
import io
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from factlab.config import ConfigError
from factlab.config import ConfigError
from factlab.experiments import REGISTRY, get_experiment
from factlab.config import ConfigError, parse_override_args, to_dict
from factlab.store.run_dir import run_id
from factlab.runs.launchers import format_exception
from factlab.store.run_dir import write_json_atomic
from factlab.config import to_dict
from factlab.experiments.base import run_experiment
from factlab.store.run_dir import run_id
from factlab.store.run_dir import write_json_atomic
from factlab.runs.launchers import make_launcher
from factlab.config import flatten
from factlab.report.style import band, paper_style, save_figure

MANIFEST = "sweep.json"
TABLE = "results.csv"
ERROR = "error.json"
SUMMARY = "summary.json"
_RANGE = re.compile(r"^(-?\d+):(-?\d+)(?::(\d+))?$")


# ---------------------------------------------------------------------------------------------
# grid expansion


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: "[8,11],[16,22]" -> ["[8,11]", "[16,22]"]."""
    items, depth, current = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [i.strip() for i in items]


def parse_axis(key: str, raw: str) -> list[str]:
    """The values of one `key=raw` argument as strings (parsed by the config later)."""

    values: list[str] = []
    for item in split_top_level(raw):
        if not item:
            raise ConfigError(f"{key}: empty value in {raw!r}")
        match = _RANGE.match(item)
        if match:
            lo, hi, step = int(match[1]), int(match[2]), int(match[3] or 1)
            if step < 1 or hi < lo:
                raise ConfigError(f"{key}: bad range {item!r}; use lo:hi or lo:hi:step "
                                  "with lo <= hi and step >= 1 (both ends included)")
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
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
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
    """A registered experiment by name, or any `Experiment` object by "module:attribute"."""

    if target in REGISTRY or ":" not in target:
        return get_experiment(target)
    module, attr = target.split(":", 1)
    return getattr(importlib.import_module(module), attr)


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
    if (run_dir / SUMMARY).exists():
        return {"status": "skipped", "run_id": rid}
    lock = _lock(run_dir)
    if lock is None:
        return {"status": "busy", "run_id": rid}
    try:
        if (run_dir / SUMMARY).exists():  # finished by someone else while we waited
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
    write_manifest(sweep)
    todo = [c for c in sweep.cells if not (sweep.run_dir(c) / SUMMARY).exists()]
    if launcher == "submitit":
        launcher_options.setdefault("folder", sweep.out / ".submitit")
    runner = make_launcher(launcher, workers, **launcher_options)
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


# ---------------------------------------------------------------------------------------------
# the table


def _cell_status(run_dir: Path) -> str:
    if (run_dir / SUMMARY).exists():
        return "done"
    if (run_dir / ERROR).exists():
        return "error"
    return "pending"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def collect_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per cell (the manifest's, else every run directory), from the run files."""

    sweep_dir = Path(sweep_dir)
    manifest = _read_json(sweep_dir / MANIFEST)
    if manifest is not None:
        cells = [(c["run_id"], c.get("config")) for c in manifest["cells"]]
    else:
        cells = [(p.name, None) for p in sorted(sweep_dir.iterdir())
                 if p.is_dir() and (p / "config.json").exists()]
    rows = []
    for rid, config in cells:
        run_dir = sweep_dir / rid
        stored = _read_json(run_dir / "config.json")
        if stored is not None:
            config = {k: v for k, v in stored.items() if k not in ("experiment", "meta")}
        row: dict[str, Any] = {"run_id": rid, "status": _cell_status(run_dir)}
        row.update(flatten(config or {}))
        summary = _read_json(run_dir / SUMMARY) if row["status"] == "done" else None
        if summary is not None:
            row["verdict"] = summary.get("verdict")
            row["holds"] = summary.get("holds")
            row["evidence"] = summary.get("evidence")
            row.update({f"metrics.{k}": v
                        for k, v in flatten(summary.get("metrics") or {}).items()})
        elif row["status"] == "done":
            row["status"] = "pending"  # unreadable summary: treat as not finished
        if row["status"] == "error":
            err = _read_json(run_dir / ERROR) or {}
            row["error"] = f"{err.get('type', 'Error')}: {err.get('message', '')}".splitlines()[0]
        rows.append(row)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    head = ["run_id", "status"]
    config_cols: list[str] = []
    metric_cols: set[str] = set()
    for row in rows:
        for key in row:
            if key.startswith("metrics."):
                metric_cols.add(key)
            elif key not in head and key not in ("holds", "evidence", "error") \
                    and key not in config_cols:
                config_cols.append(key)
    tail = ["holds", "evidence", *sorted(metric_cols), "error"]
    return head + config_cols + [c for c in tail if any(c in r for r in rows)]


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _replace_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_table(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Rebuild results.csv (and results.parquet with pyarrow) atomically; return the rows."""
    sweep_dir = Path(sweep_dir)
    rows = collect_rows(sweep_dir)
    columns = _columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell_text(row.get(c)) for c in columns])
    _replace_atomic(sweep_dir / TABLE, buf.getvalue().encode())
    _write_parquet(sweep_dir, rows, columns)
    return rows


def _write_parquet(sweep_dir: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    data = {}
    for col in columns:
        values = [row.get(col) for row in rows]
        kinds = {type(v) for v in values if v is not None}
        if not kinds <= {int, float} and not kinds <= {bool} and not kinds <= {str}:
            values = [None if v is None else _cell_text(v) for v in values]
        elif kinds == {int, float}:
            values = [None if v is None else float(v) for v in values]
        data[col] = values
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(data), sink)
    _replace_atomic(sweep_dir / "results.parquet", sink.getvalue().to_pybytes())


def _parse_cell(text: str) -> Any:
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results.csv with numbers, booleans and lists parsed back."""
    with open(path, newline="") as fh:
        return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]


# ---------------------------------------------------------------------------------------------
# the trend figure


def _scalar(value: Any) -> Any:
    """Unwrap one-element lists (a tuple field swept as `d=8,11` holds [8], [11])."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _collapse_families(rows: list[dict[str, Any]], x: str) -> None:
    """Add `metrics.P` = `metrics.P.<x value>` to every row (e.g. capacity.linear.<d>).

    Experiments that loop over x internally key their metrics by its value; a sweep that
    varies x gives each cell one such column, and this joins them into one trend.
    """
    for row in rows:
        tail = "." + _cell_text(_scalar(row.get(x)))
        for key in [k for k in row if k.startswith("metrics.") and k.endswith(tail)]:
            row.setdefault(key[: -len(tail)], row[key])
            if row[key] is not None:
                row[key[: -len(tail)]] = row[key]


def draw_trend(sweep_dir: str | Path, x: str | None = None,
               metrics: Sequence[str] | None = None) -> Path | None:
    """Metric vs the first swept key, one line per other-axes combination, seed bands.

    Reads only results.csv and sweep.json. Mean over seeds with a min-max band; `metrics`
    defaults to every numeric `metrics.*` column present in all finished cells (at most four).
    """
    import numpy as np


    sweep_dir = Path(sweep_dir)
    rows = [r for r in read_table(sweep_dir / TABLE) if r["status"] == "done"]
    if not rows:
        return None
    manifest = _read_json(sweep_dir / MANIFEST) or {}
    axes = [k for k in manifest.get("axes", {}) if k not in ("seed", "seeds")]
    x = x or (axes[0] if axes else "seed")
    others = [k for k in axes if k != x]
    _collapse_families(rows, x)
    if metrics is None:
        candidates = sorted({k for r in rows for k in r if k.startswith("metrics.")})
        metrics = [k for k in candidates
                   if all(_is_number(_scalar(r.get(k))) for r in rows)
                   and len({_scalar(r.get(k)) for r in rows}) > 1][:4]
        if not metrics:
            metrics = ["holds"]
    xs_raw = sorted({json.dumps(_scalar(r.get(x))) for r in rows})
    xs_val = [json.loads(v) for v in xs_raw]
    numeric = all(_is_number(v) for v in xs_val)
    if numeric:
        order = sorted(range(len(xs_val)), key=lambda i: xs_val[i])
        xs_raw = [xs_raw[i] for i in order]
        positions = [float(xs_val[i]) for i in order]
    else:
        positions = list(range(len(xs_raw)))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        label = ", ".join(f"{k}={_cell_text(_scalar(r.get(k)))}" for k in others) or "mean"
        groups.setdefault(label, []).append(r)
    with paper_style():
        import matplotlib.pyplot as plt

        fig, axs = plt.subplots(len(metrics), 1, squeeze=False,
                                figsize=(3.25, 1.6 + 1.1 * len(metrics)), sharex=True)
        for ax, metric in zip(axs[:, 0], metrics):
            for label, sel in groups.items():
                seeds = sorted({json.dumps(r.get("seeds")) for r in sel})
                ys = np.full((len(seeds), len(xs_raw)), np.nan)
                for r in sel:
                    col = xs_raw.index(json.dumps(_scalar(r.get(x))))
                    value = _scalar(r.get(metric))
                    if isinstance(value, bool):
                        value = float(value)
                    if _is_number(value):
                        ys[seeds.index(json.dumps(r.get("seeds"))), col] = value
                keep = ~np.all(np.isnan(ys), axis=0)
                if keep.any():
                    band(ax, np.asarray(positions)[keep], ys[:, keep], label)
            ax.set_ylabel(metric.removeprefix("metrics."))
        last = axs[-1, 0]
        last.set_xlabel(x)
        if numeric and min(positions) > 0 and max(positions) / min(positions) >= 10:
            last.set_xscale("log")
        if not numeric:
            last.set_xticks(positions, [json.loads(v) if v.startswith('"') else v
                                        for v in xs_raw])
        if len(groups) > 1:
            axs[0, 0].legend()
        n_seeds = len({json.dumps(r.get("seeds")) for r in rows})
        axs[0, 0].set_title(f"{manifest.get('experiment', '')} sweep "
                            f"(mean, min-max over {n_seeds} seed{'s' * (n_seeds > 1)})")
        return save_figure(fig, sweep_dir, "trend")


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


def sweep_hash(sweep: Sweep) -> str:
    """A short digest of the sweep's cells (stable across launchers and reruns)."""
    blob = json.dumps(sorted(c.run_id for c in sweep.cells)).encode()
    return hashlib.sha256(blob).hexdigest()[:8]

