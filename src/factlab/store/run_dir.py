"""The run directory: resolved config, metrics JSONL, summary, figures and checkpoints.

Layout (see specs/ecosystem.md §4)::

    <run_dir>/config.json            resolved config + meta (factlab version, git SHA)
    <run_dir>/metrics.jsonl          one JSON object per evaluation, flushed on write
    <run_dir>/summary.json           verdict and final metrics; its presence means "done"
    <run_dir>/*.png, *.pdf           figures
    <run_dir>/<name>.safetensors     checkpoints (never pickles)

Writes of JSON documents go through a temporary file and a rename, so a killed process never
leaves a torn `config.json` or `summary.json`.
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

from factlab.version import __version__


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
    tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


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
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


class RunStore:
    """One run's directory and the files in it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._metrics = None

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    def is_done(self) -> bool:
        """A run is finished exactly when its summary exists."""
        return self.summary_path.exists()

    def start(self, experiment: str, config: dict[str, Any]) -> None:
        """Write config.json and truncate metrics.jsonl for a fresh run."""
        meta = {"factlab_version": __version__, "git_sha": git_sha(),
                "run_id": run_id(config), "torch_version": torch.__version__}
        write_json_atomic(self.config_path, {"experiment": experiment, **config, "meta": meta})
        self.close()
        self.metrics_path.write_text("")
        if self.summary_path.exists():
            self.summary_path.unlink()

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
