"""The N_min sweep of IC-recall: per arm, size and seed, the smallest N on a geometric grid that
reaches the target, every size searched on its own (`analysis.search.grid_min_steps`), each
probe the lr grid chosen on validation (`pipelines.ic_finetune.probe_n`). Each search starts
at a guess: the previous seed's N_min at this size, else this seed's at the previous size.
The guess only saves probes (the answer is a grid point, the same from any start), so sizes
stay independent.

Resumable: every finished probe is appended to `probes.jsonl` in the run directory (which
`RunStore.start` does not truncate) and read back on a rerun of the same config, so an
interrupted `scale=paper` sweep restarts where it stopped. A progress bar counts probes against
an estimate (a search whose guess is within one stride, `typical_probes`) and shows the ETA.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from factlab.analysis.search import drive, grid_min_steps, typical_probes
from factlab.config import ConfigError
from factlab.models.ic_model import ICModelConfig
from factlab.pipelines.ic_finetune import FineTuneResult, Protocol, probe_n
from factlab.pipelines.ic_memories import Setup
from factlab.runtime import progress_enabled
from factlab.store.run_dir import run_id
from factlab.train.loop import TrainConfig


@dataclasses.dataclass
class Arm:
    """One curve of the sweep: what is trained, on which sizes, judged on which metric."""

    name: str
    sizes: tuple[int, ...]  # S values
    model: ICModelConfig
    train: TrainConfig
    lr_grid: tuple[float, ...]
    n_lo: int
    n_hi: int
    make_setup: Callable[[int], Setup]  # S -> the frozen fixture of that size
    learn_values: bool = False  # the control: an empty value table the run must fill
    metric: str = "acc_seen"  # test metric the target applies to (see ic_recall_samples)


class ProbeCache:
    """probes.jsonl of a run directory: finished probes by key, appended as they finish.

    With `knobs` (what a probe's outcome depends on), probes.config.json beside it records
    their fingerprint, and a directory written under other knobs is refused in one line
    rather than resumed: its probes would answer another question under the same keys. A
    directory with probes but no fingerprint yet (written before it existed) is adopted.
    """

    def __init__(self, path: Path, knobs: dict[str, Any] | None = None):
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if knobs is not None:
            _check_fingerprint(path.with_name(path.stem + ".config.json"), knobs)
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a torn last line from a crash
                    continue
                self.done[rec["key"]] = rec

    def add(self, rec: dict[str, Any]) -> None:
        """Remember a finished probe (flushed at once, so a kill loses at most this one)."""
        self.done[rec["key"]] = rec
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")


def _check_fingerprint(sidecar: Path, knobs: dict[str, Any]) -> None:
    """Write `knobs`' fingerprint to `sidecar`, or refuse one that differs."""
    mine = run_id(knobs)
    if sidecar.exists():
        theirs = json.loads(sidecar.read_text()).get("fingerprint")
        if theirs != mine:
            raise ConfigError(f"{sidecar.parent}: its probes were found under other knobs "
                              f"(fingerprint {theirs}, these {mine}); resume with the same "
                              "knobs or give a new --out")
        return
    sidecar.write_text(json.dumps({"fingerprint": mine, "knobs": knobs}, indent=1,
                                  sort_keys=True))


class _Bar:
    """A tqdm bar when progress is on (tqdm shows the ETA), else nothing."""

    def __init__(self, total: int, enabled: bool | None):
        self.bar = None
        if progress_enabled() if enabled is None else enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="ic-recall N_min probes", dynamic_ncols=True)

    def step(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_sweep(arms: list[Arm], seeds: tuple[int, ...], proto: Protocol, ratio: float,
              target: float, device: torch.device, cache: ProbeCache,
              log: Callable[[str, dict[str, Any]], None], show_progress: bool | None = None,
              lr_choice: str = "every_probe") -> list[dict[str, Any]]:
    """One `n_min` row per (arm, S, seed); every probe is logged as split "probe".

    `lr_choice="first_probe"` trains the arm's lr grid at the first probe of each search only
    and keeps the lr chosen there (on validation) for that search's later probes, which lie
    within a few grid strides of it: a grid of G lrs then costs G times less.
    """
    total = sum(len(a.sizes) * len(seeds) * typical_probes(a.n_lo, a.n_hi, ratio) for a in arms)
    bar = _Bar(total, show_progress)
    rows = []
    for arm in arms:
        previous: int | None = None  # this arm's N_min at the previous size (seed 0's)
        for S in arm.sizes:
            setup = arm.make_setup(S)
            triplets = S * setup.kb.n_relations
            for seed in seeds:
                chosen: list[float] = []  # the lr of this search's first probe

                def probe(n: int, arm: Arm = arm, S: int = S, seed: int = seed,
                          setup: Setup = setup, triplets: int = triplets,
                          chosen: list[float] = chosen) -> str:
                    key = f"{arm.name}|S={S}|seed={seed}|n={n}"
                    grid = tuple(chosen) if chosen else arm.lr_grid
                    if key not in cache.done:
                        start = time.perf_counter()
                        outcome, res = probe_n(setup, arm.model, arm.train, proto, n, grid,
                                               seed, device, target, arm.metric,
                                               arm.learn_values)
                        cache.add(_probe_record(key, arm.name, S, triplets, seed, n, outcome,
                                                res, arm.metric, time.perf_counter() - start))
                    rec = cache.done[key]
                    if lr_choice == "first_probe" and not chosen:
                        chosen.append(rec["lr"])
                    log("probe", rec)
                    bar.step(f"{arm.name} S={S} seed={seed} N={n}: {rec['outcome']}")
                    return rec["outcome"]

                guess = next((r["n_min"] for r in reversed(rows) if r["arm"] == arm.name
                              and r["S"] == S and r["n_min"]), previous)
                found = drive(grid_min_steps(arm.n_lo, arm.n_hi, ratio, guess), probe)
                row = {"arm": arm.name, "S": S, "triplets": triplets, "seed": seed,
                       "d": arm.model.d_model, "n_lo": arm.n_lo, "n_hi": arm.n_hi,
                       "oracle_acc": setup.info.get("oracle_acc"), **found}
                log("n_min", row)
                rows.append(row)
            previous = next((r["n_min"] for r in rows if r["arm"] == arm.name and r["S"] == S
                             and r["n_min"]), previous)
    bar.close()
    return rows


def _probe_record(key: str, arm: str, S: int, triplets: int, seed: int, n: int, outcome: str,
                  res: FineTuneResult, metric: str, wall: float) -> dict[str, Any]:
    return {"key": key, "arm": arm, "S": S, "triplets": triplets, "seed": seed, "n": n,
            "outcome": outcome, "lr": res.lr, "metric": metric, "value": res.test[metric],
            "acc_all": res.test["acc_all"], "acc_seen": res.test["acc_seen"],
            "acc_heldout": res.test["acc_heldout"], "val_loss": res.best_val["loss"],
            "val_acc": res.best_val["acc"], "steps": res.steps, "stop_reason": res.stop_reason,
            "still_improving": res.still_improving, "wall_s": round(wall, 2)}
