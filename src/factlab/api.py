"""The Python API: run a claim, and read runs and metrics into pandas.

    import factlab
    s = factlab.run("capacity-linear", d=(8, 11, 16), train__lr=0.5)   # a Summary
    s.verdict, s.evidence, s.metrics, s.run_dir
    runs = factlab.load_runs("runs/reproduce-quick")   # one row per run
    curves = factlab.load_metrics(s.run_dir)           # step, split, metric, value

Overrides are the knobs of `factlab show NAME`; a dotted key is written with `__` in a keyword
(`train__lr=0.5` is `train.lr=0.5`), or passed in `overrides={"train.lr": 0.5}`. pandas is a
core dependency: these two readers are the way into the results, and it is already there with
every scientific Python stack (and pulled in by the `hf` extra); it is imported only when one of
them is called, so `import factlab` stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from factlab.config import ConfigError, flatten
from factlab.experiments import get_experiment
from factlab.experiments.base import default_run_dir, run_experiment
from factlab.report.collect import iter_run_dirs
from factlab.store.run_dir import iter_jsonl


@dataclasses.dataclass
class Summary:
    """A finished run: its verdict, evidence, metrics, wall time and where its files are."""

    experiment: str
    claim: str
    verdict: str
    holds: bool | None
    reason: str
    evidence: str
    metrics: dict[str, Any]
    wall_time_s: float | None
    figures: list[Path]
    run_dir: Path

    @classmethod
    def read(cls, run_dir: str | Path) -> Summary:
        """The Summary stored in <run_dir>/summary.json."""
        run_dir = Path(run_dir)
        path = run_dir / "summary.json"
        if not path.is_file():
            raise ConfigError(f"{str(run_dir)!r} holds no finished run (no summary.json)")
        data = json.loads(path.read_text())
        return cls(data.get("experiment", ""), data.get("claim", ""), data.get("verdict", ""),
                   data.get("holds"), data.get("reason") or "", data.get("evidence", ""),
                   data.get("metrics") or {}, data.get("wall_time_s"),
                   [run_dir / f for f in data.get("figures") or []], run_dir)

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.experiment}: {self.verdict.upper()}{reason}; {self.evidence}"


def run(name: str, out: str | Path | None = None, force: bool = False,
        overrides: dict[str, Any] | None = None, show_progress: bool = False,
        tensorboard: bool | None = None, **knobs: Any) -> Summary:
    """Run experiment `name` with its defaults changed by `knobs` and return its Summary.

    The run goes to `out` (default runs/NAME/RUN_ID). A run directory that already holds a
    finished run of the same config is read back instead of rerun, unless `force`.
    """
    exp = get_experiment(name)
    values = {k.replace("__", "."): v for k, v in knobs.items()}
    values.update(overrides or {})
    values = {k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
              for k, v in values.items()}
    cfg = exp.make_config(values)
    run_dir = Path(out) if out is not None else default_run_dir(exp, cfg)
    if not force and (run_dir / "summary.json").is_file():
        return Summary.read(run_dir)
    run_experiment(exp, cfg, out=run_dir, show_progress=show_progress, tensorboard=tensorboard)
    return Summary.read(run_dir)


def _status(run_dir: Path) -> str:
    if (run_dir / "summary.json").exists():
        return "done"
    return "error" if (run_dir / "error.json").exists() else "pending"


def load_runs(root: str | Path) -> Any:
    """A pandas DataFrame with one row per run directory under `root` (itself included).

    Columns: `experiment`, `run_dir`, `run_id`, `status`, `verdict`, `holds`, `reason`,
    `evidence`, `wall_time_s`, then the flattened config (`config.<dotted>`) and the scalar
    summary metrics (`metrics.<dotted>`). Lists stay Python lists in their cells.
    """
    import pandas as pd

    rows = []
    root = Path(root)
    for run_dir in iter_run_dirs(root):
        try:
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        meta = config.pop("meta", {}) or {}
        row: dict[str, Any] = {"experiment": config.pop("experiment", None),
                               "run_dir": str(run_dir), "run_id": meta.get("run_id"),
                               "status": _status(run_dir), "verdict": None, "holds": None,
                               "reason": None, "evidence": None, "wall_time_s": None}
        row.update({f"config.{k}": v for k, v in flatten(config).items()})
        if row["status"] == "done":
            try:
                summary = json.loads((run_dir / "summary.json").read_text())
            except (OSError, json.JSONDecodeError):
                summary = {}
            for key in ("verdict", "holds", "reason", "evidence", "wall_time_s"):
                row[key] = summary.get(key)
            row.update({f"metrics.{k}": v
                        for k, v in flatten(summary.get("metrics") or {}).items()
                        if not isinstance(v, (list, dict))})
        rows.append(row)
    head = ["experiment", "run_dir", "run_id", "status", "verdict", "holds", "reason",
            "evidence", "wall_time_s"]
    return pd.DataFrame(rows, columns=head if not rows else None)


def load_metrics(run_dir: str | Path) -> Any:
    """metrics.jsonl of one run as a long pandas DataFrame: step, split, metric, value.

    Every numeric field of every record is one row; the record's other text fields (such as
    `stage` or `arm`) and `seed` become extra columns, so per-seed curves can be grouped.
    """
    import pandas as pd

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} has no metrics.jsonl")
    rows = []
    for rec in iter_jsonl(path):
        labels = {k: v for k, v in rec.items() if k not in ("step", "split")
                  and (isinstance(v, str) or k == "seed")}
        for key, value in rec.items():
            if key in ("step", "split") or key in labels:
                continue
            if isinstance(value, bool):
                value = float(value)
            if isinstance(value, (int, float)):
                rows.append({"step": rec.get("step"), "split": rec.get("split"), **labels,
                             "metric": key, "value": float(value)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["step", "split", "metric", "value"])
    first = ["step", "split", "metric", "value"]
    return frame[first + [c for c in frame.columns if c not in first]]
