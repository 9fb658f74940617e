"""What an experiment is, and the runner that turns one into a run directory.

An experiment is a claim plus three functions: a default config (a dataclass), `run(cfg, ctx)`
that trains and measures and returns a `Verdict` computed from its own numbers, and
`figures(run_dir)` that redraws every figure from the stored files alone.

A verdict has three states (`factlab.analysis.verdicts`): holds, fails, or inconclusive with a
one-line reason (a budget spent while still improving, a target outside the searched bracket, a
prerequisite not met, too few samples). A descriptive experiment measures without a claim and
says so.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from factlab.analysis.verdicts import Verdict
from factlab.config import ExperimentConfig, apply_overrides, to_dict
from factlab.errors import failure_line
from factlab.runtime import (
    choose_threads,
    configure_threads,
    progress_enabled,
    resolve_device,
    set_seed,
)
from factlab.store.run_dir import RunStore, run_id, write_json_atomic
from factlab.store.tensorboard import open_sink


@dataclasses.dataclass
class RunContext:
    """What `run` gets besides its config: the store, the device, and progress settings."""

    store: RunStore
    device: torch.device
    show_progress: bool
    sink: Any = None  # an optional live sink (store.tensorboard.TensorBoardSink)

    def log(self, step: int, split: str, **metrics: Any) -> None:
        """Append one record to metrics.jsonl (and stream it to the sink, if any)."""
        self.store.log({"step": step, "split": split, **metrics})
        if self.sink is not None:
            self.sink.log(step, split, metrics)


# Declared by the trigger-task experiments: their [B T, d] products (B = T = 64, d = 64-128)
# are large enough that, on 2 idle cores, a 150-step run of each took 1.23-1.50x less wall
# time with two threads than with one (the table is in docs/reliability.md)
TRIGGER_TASK_THREADS = 2


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named claim with its config, run function and figure function."""

    name: str
    claim: str
    config: type[ExperimentConfig]
    run: Callable[[Any, RunContext], Verdict]
    figures: Callable[[Path], list[Path]]
    presets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    descriptive: bool = False  # a measurement with no claim: its verdict is "descriptive"
    paper: tuple[str, str] | None = None  # (arXiv id, title); else report.papers' prefix table
    reconstruction: bool | None = None  # our own setting where the paper gives none
    # intra-op threads its workload measurably gains from on idle cores (docs/reliability.md);
    # None: the config rule of `runtime.choose_threads`
    threads: int | None = None
    verdict_keys: tuple[str, ...] = ()  # knobs the verdict rule reads (marked by `show`)
    # knobs with no usable default (knob -> what to give): `reproduce` skips the claim, with
    # this as its reason, unless the knob is set
    requires: dict[str, str] = dataclasses.field(default_factory=dict)

    def make_config(self, overrides: dict[str, Any] | None = None) -> Any:
        """Default config, then the preset named by `scale` (if any), then `overrides`."""
        overrides = dict(overrides or {})
        cfg = self.config()
        scale = overrides.get("scale", cfg.scale)
        cfg = apply_overrides(cfg, {"scale": scale})
        preset = dict(self.presets.get(cfg.scale, {}))
        return apply_overrides(cfg, {**preset, **overrides})


def default_run_dir(exp: Experiment, cfg: Any, root: str | Path = "runs") -> Path:
    """runs/<experiment>/<run_id>."""
    return Path(root) / exp.name / run_id(to_dict(cfg))


def run_experiment(exp: Experiment, cfg: Any, out: str | Path | None = None,
                   show_progress: bool | None = None,
                   tensorboard: bool | None = None) -> dict[str, Any]:
    """Run `exp` with `cfg` into `out` and return the summary written to summary.json.

    `tensorboard` (default: the FACTLAB_TENSORBOARD environment variable) also streams every
    metrics record to an event file in <run_dir>/tensorboard.
    """
    run_dir = Path(out) if out is not None else default_run_dir(exp, cfg)
    device = resolve_device(cfg.device)  # an unavailable device is refused before any write
    store = RunStore(run_dir)
    config = to_dict(cfg)
    # the thread policy of docs/reliability.md
    threads = configure_threads(choose_threads(cfg, exp.threads))
    store.start(exp.name, config, meta={"threads": threads})
    set_seed(cfg.seed)
    ctx = RunContext(store, device,
                     progress_enabled() if show_progress is None else show_progress,
                     open_sink(run_dir, tensorboard))
    start = time.perf_counter()
    try:
        verdict = exp.run(cfg, ctx)
    except BaseException as err:  # the run directory says why it has no summary.json
        store.fail(failure_line(err, cfg))
        raise
    finally:
        if ctx.sink is not None:
            ctx.sink.close()
    wall = time.perf_counter() - start
    store.close()
    summary = {
        "experiment": exp.name, "claim": exp.claim, **verdict.summary_fields(),
        "wall_time_s": round(wall, 2), "figures": [], "run_id": run_id(config),
    }
    if exp.paper:  # declared by the experiment; else the report's prefix table decides
        summary["paper"] = {"arxiv": exp.paper[0], "title": exp.paper[1]}
    if exp.reconstruction is not None:
        summary["reconstruction"] = exp.reconstruction
    # The figures annotate the verdict's numbers from summary.json, so it is written first
    # (still under the writer lock), then again with the list of figures drawn.
    write_json_atomic(store.summary_path, summary)
    try:
        summary["figures"] = [str(p.relative_to(run_dir)) for p in exp.figures(run_dir)]
    finally:  # a figure that fails to draw does not undo the verdict
        store.write_summary(summary)
    return summary
