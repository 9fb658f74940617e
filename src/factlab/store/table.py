"""The tables of a sweep directory, rebuilt from its run directories (tidy layout).

Two CSV files, each written through a temporary file and a rename (never torn):

- `results.csv`: one row per cell: `run_id`, `status` (done | error | pending), the flattened
  config (dotted names), `verdict`, `holds`, `reason`, `evidence`, one `metrics.<dotted>`
  column per scalar summary metric, and `error`. Every cell is one plain value: a list config
  value is written as its items joined by ";" (a one-item list as the item itself), never JSON.
- `metrics.csv`: the long form of every summary metric: `run_id, metric, key, value`. Metrics
  an experiment keys by a value (capacity's `capacity.linear.<d>`) and lists are rows here, with
  the value key or list index in `key`, instead of one sparse column per value in results.csv.

Both are pure functions of the run directories' configs and summaries (no wall times), so the
same sweep gives byte-identical tables whichever launcher ran it. `results.parquet` is written
too when pyarrow is installed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from factlab.config import flatten

MANIFEST = "sweep.json"
TABLE = "results.csv"
LONG = "metrics.csv"
ERROR = "error.json"
SUMMARY = "summary.json"
SEP = ";"


def cell_status(run_dir: Path) -> str:
    """done (summary.json), error (error.json) or pending."""
    if (run_dir / SUMMARY).exists():
        return "done"
    if (run_dir / ERROR).exists():
        return "error"
    return "pending"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _is_value_key(key: str) -> bool:
    try:
        float(key)
    except ValueError:
        return False
    return True


def metric_leaves(metrics: Any, path: tuple[str, ...] = (),
                  key: tuple[str, ...] = ()) -> list[tuple[str, str, Any]]:
    """(metric, key, value) for every leaf; numeric dict keys and list indices go to `key`."""
    if isinstance(metrics, dict):
        out = []
        for k, v in metrics.items():
            k = str(k)
            out += (metric_leaves(v, path, (*key, k)) if _is_value_key(k)
                    else metric_leaves(v, (*path, k), key))
        return out
    if isinstance(metrics, (list, tuple)):
        out = []
        for i, v in enumerate(metrics):
            out += metric_leaves(v, path, (*key, str(i)))
        return out
    return [(".".join(path), ".".join(key), metrics)]


def cell_text(value: Any) -> str:
    """One CSV cell: '' for None, true/false, lists joined by ';', never JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return SEP.join(cell_text(v) for v in value)
    if isinstance(value, dict):  # not produced by flatten; kept readable all the same
        return SEP.join(f"{k}={cell_text(v)}" for k, v in value.items())
    return str(value)


def collect_rows(sweep_dir: str | Path) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    """(wide rows, long metric rows) of every cell (the manifest's, else every run dir)."""
    sweep_dir = Path(sweep_dir)
    manifest = read_json(sweep_dir / MANIFEST)
    if manifest is not None:
        cells = [(c["run_id"], c.get("config")) for c in manifest["cells"]]
    else:
        cells = [(p.name, None) for p in sorted(sweep_dir.iterdir())
                 if p.is_dir() and (p / "config.json").exists()]
    rows, long = [], []
    for rid, config in cells:
        run_dir = sweep_dir / rid
        stored = read_json(run_dir / "config.json")
        if stored is not None:
            config = {k: v for k, v in stored.items() if k not in ("experiment", "meta")}
        row: dict[str, Any] = {"run_id": rid, "status": cell_status(run_dir)}
        row.update({k: (v[0] if isinstance(v, list) and len(v) == 1 else v)
                    for k, v in flatten(config or {}).items()})
        summary = read_json(run_dir / SUMMARY) if row["status"] == "done" else None
        if summary is not None:
            row.update(verdict=summary.get("verdict"), holds=summary.get("holds"),
                       reason=summary.get("reason") or None, evidence=summary.get("evidence"))
            for metric, key, value in metric_leaves(summary.get("metrics") or {}):
                long.append([rid, metric, key, value])
                if not key:
                    row[f"metrics.{metric}"] = value
        elif row["status"] == "done":
            row["status"] = "pending"  # unreadable summary: treat as not finished
        if row["status"] == "error":
            err = read_json(run_dir / ERROR) or {}
            row["error"] = f"{err.get('type', 'Error')}: {err.get('message', '')}".splitlines()[0]
        rows.append(row)
    return rows, long


_TAIL = ("verdict", "holds", "reason", "evidence")


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """run_id, status, config columns (first-seen order), verdict fields, metrics, error."""
    head = ["run_id", "status"]
    config_cols: list[str] = []
    metric_cols: set[str] = set()
    for row in rows:
        for key in row:
            if key.startswith("metrics."):
                metric_cols.add(key)
            elif key not in head and key not in (*_TAIL, "error") and key not in config_cols:
                config_cols.append(key)
    tail = [*_TAIL, *sorted(metric_cols), "error"]
    return head + config_cols + [c for c in tail if any(c in r for r in rows)]


def replace_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, fsync and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _csv_bytes(header: list[str], body: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([cell_text(v) for v in line] for line in body)
    return buf.getvalue().encode()


def write_table(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Rebuild results.csv and metrics.csv (and results.parquet with pyarrow); return rows."""
    sweep_dir = Path(sweep_dir)
    rows, long = collect_rows(sweep_dir)
    cols = columns(rows)
    replace_atomic(sweep_dir / TABLE, _csv_bytes(cols, [[r.get(c) for c in cols] for r in rows]))
    replace_atomic(sweep_dir / LONG, _csv_bytes(["run_id", "metric", "key", "value"], long))
    _write_parquet(sweep_dir, rows, cols)
    return rows


def _write_parquet(sweep_dir: Path, rows: list[dict[str, Any]], cols: list[str]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    data = {}
    for col in cols:
        values = [row.get(col) for row in rows]
        kinds = {type(v) for v in values if v is not None}
        if not kinds <= {int, float} and not kinds <= {bool} and not kinds <= {str}:
            values = [None if v is None else cell_text(v) for v in values]
        elif kinds == {int, float}:
            values = [None if v is None else float(v) for v in values]
        data[col] = values
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(data), sink)
    replace_atomic(sweep_dir / "results.parquet", sink.getvalue().to_pybytes())


def _scalar(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_cell(text: str) -> Any:
    """A CSV cell back to a value: '' -> None, true/false, numbers, '8;11' -> [8, 11].

    Text with ';' whose parts are not all numbers or booleans (an evidence line) stays text.
    """
    if text == "":
        return None
    if SEP in text:
        parts = [_scalar(t) for t in text.split(SEP)]
        return parts if not any(isinstance(p, str) for p in parts) else text
    return _scalar(text)


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results.csv (or metrics.csv) with numbers, booleans and lists parsed back."""
    with open(path, newline="") as fh:
        return [{k: parse_cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]
