"""The run directory: resolved config, metrics JSONL, summary, figures and checkpoints.

Layout::

    <run_dir>/config.json            resolved config + meta (factlab version, git SHA, threads)
    <run_dir>/metrics.jsonl          one JSON object per evaluation, flushed on write
    <run_dir>/summary.json           verdict and final metrics; "done" iff it parses
    <run_dir>/failed.json            the one-line error of a run that stopped (no summary)
    <run_dir>/.writer.lock           held by the one process writing the run
    <run_dir>/*.png, *.pdf           figures
    <run_dir>/<name>.safetensors     checkpoints (never pickles)

Writes of JSON documents go through a temporary file and a rename, so a killed process never
leaves a torn `config.json` or `summary.json`. One writer per directory: `RunStore.start` takes
an exclusive lock that a second `factlab run` into the same directory cannot get (it refuses
with one line, `RunBusyError`); the lock is released by `write_summary`, `fail`, or the death
of the process. Non-finite floats are stored as null (NaN) or the strings "inf" / "-inf",
which the config parser reads back as floats.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from factlab.config import ConfigError
from factlab.version import __version__

LOCK = ".writer.lock"


class RunBusyError(RuntimeError):
    """Another live process is writing this run directory (exit code 1: the environment)."""


def summary_ok(run_dir: str | Path) -> bool:
    """A run is done exactly when its summary.json exists and parses as a JSON object.

    A torn or truncated summary (a full disk, a hand edit) is not done: resume reruns the run.
    """
    try:
        return isinstance(json.loads((Path(run_dir) / "summary.json").read_text()), dict)
    except (OSError, ValueError):
        return False


def record_figures(run_dir: str | Path, paths: list[Path]) -> None:
    """Set summary.json's "figures" to `paths` (redrawn by `factlab report`), if they differ."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    figures = [str(Path(p).relative_to(run_dir)) for p in paths]
    if summary.get("figures") != figures:
        write_json_atomic(run_dir / "summary.json", {**summary, "figures": figures})


def run_id(config: dict[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the canonical config JSON."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def git_sha() -> str | None:
    """The git commit of the factlab checkout, when it is one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` via a temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True,
                                  allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written temporary


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


class RunStore:
    """One run's directory and the files in it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out: {str(self.root)!r} is a file, not a run directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self._metrics = None
        self._lock: Any = None

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def failed_path(self) -> Path:
        return self.root / "failed.json"

    def is_done(self) -> bool:
        """A run is finished exactly when its summary exists and parses (`summary_ok`)."""
        return summary_ok(self.root)

    def acquire(self) -> None:
        """Take the directory's writer lock, or raise `RunBusyError` (one line) if it is held."""
        if self._lock is not None:
            return
        try:
            import fcntl
        except ImportError:  # Windows: no cross-process guard
            return
        fh = open(self.root / LOCK, "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise RunBusyError(f"{self.root} is being written by another factlab process; "
                               "wait for it or choose another --out") from None
        self._lock = fh

    def release(self) -> None:
        """Release the writer lock (a no-op when not held)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def start(self, experiment: str, config: dict[str, Any],
              meta: dict[str, Any] | None = None) -> None:
        """Take the writer lock, write config.json and truncate metrics.jsonl for a fresh run.

        `meta` adds run facts that are not knobs (e.g. the thread count) to config.json's meta.
        """
        self.acquire()
        meta = {"factlab_version": __version__, "git_sha": git_sha(),
                "run_id": run_id(config), "torch_version": torch.__version__, **(meta or {})}
        write_json_atomic(self.config_path, {"experiment": experiment, **config, "meta": meta})
        self.close()
        self.metrics_path.write_text("")
        self.summary_path.unlink(missing_ok=True)
        self.failed_path.unlink(missing_ok=True)

    def fail(self, message: str) -> None:
        """Mark the run failed: failed.json with the one-line error, no summary; unlock."""
        self.close()
        self.summary_path.unlink(missing_ok=True)
        write_json_atomic(self.failed_path, {"status": "failed", "error": message})
        self.release()

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record (a flat dict with 'step' and 'split') and flush it."""
        if self._metrics is None:
            self._metrics = open(self.metrics_path, "a")
        self._metrics.write(json.dumps(_jsonable(record), sort_keys=True) + "\n")
        self._metrics.flush()

    def close(self) -> None:
        """Close the metrics file handle (reopened lazily on the next `log`)."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write summary.json last: its presence marks the run as complete."""
        self.close()
        write_json_atomic(self.summary_path, summary)
        self.failed_path.unlink(missing_ok=True)
        self.release()

    def read_config(self) -> dict[str, Any]:
        """The stored config.json."""
        return json.loads(self.config_path.read_text())

    def read_summary(self) -> dict[str, Any]:
        """The stored summary.json."""
        return json.loads(self.summary_path.read_text())

    def read_metrics(self) -> list[dict[str, Any]]:
        """All records of metrics.jsonl (a torn last line from a crash is skipped)."""
        return list(iter_jsonl(self.metrics_path))

    def save_checkpoint(self, name: str, tensors: dict[str, torch.Tensor],
                        metadata: dict[str, str] | None = None) -> Path:
        """Save tensors as `<name>.safetensors` (contiguous CPU copies)."""
        from safetensors.torch import save_file

        path = self.root / f"{name}.safetensors"
        flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(flat, str(path), metadata=metadata)
        return path

    def load_checkpoint(self, name: str) -> dict[str, torch.Tensor]:
        """Load `<name>.safetensors` onto the CPU."""
        from safetensors.torch import load_file

        return load_file(str(self.root / f"{name}.safetensors"))


def read_split(run_dir: str | Path, split: str) -> list[dict[str, Any]]:
    """The metrics.jsonl records of a run directory whose "split" is `split`."""
    return [r for r in iter_jsonl(Path(run_dir) / "metrics.jsonl") if r["split"] == split]


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file, skipping a torn trailing line."""
    if not path.exists():
        return
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
