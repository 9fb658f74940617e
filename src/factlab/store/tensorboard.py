"""An optional live sink: every metrics record also goes to a TensorBoard event file.

metrics.jsonl stays the record of a run; the event file in <run_dir>/tensorboard is a copy for
live curves in TensorBoard (and in aim or wandb, which import TensorBoard logs). Each numeric
field of a record becomes the scalar `<split>/<field>` at its step; text fields are skipped.
TensorBoard is imported only when a sink is opened (`pip install factlab[tb]`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from factlab.config import ConfigError

ENV = "FACTLAB_TENSORBOARD"


def wanted(flag: bool | None = None) -> bool:
    """`flag` when given, else whether FACTLAB_TENSORBOARD is set to a true value."""
    if flag is not None:
        return flag
    return os.environ.get(ENV, "").lower() in ("1", "true", "yes", "on")


class TensorBoardSink:
    """Writes scalars to <run_dir>/tensorboard with torch's SummaryWriter."""

    def __init__(self, run_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: "
                              "pip install 'factlab[tb]'") from None
        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=5)

    def log(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        """Add every finite numeric field of one record as a scalar at `step`."""
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
                    value = value.item()
                else:
                    continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(f"{split}/{key}", float(value), global_step=int(step))

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.flush()
        self._writer.close()


def open_sink(run_dir: str | Path, flag: bool | None = None) -> TensorBoardSink | None:
    """A sink for `run_dir` when TensorBoard output is wanted (see `wanted`), else None."""
    return TensorBoardSink(run_dir) if wanted(flag) else None
