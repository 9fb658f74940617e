"""Task A grids (arXiv 2412.06538 Fig. 4 right): one Task A model per (seed, heads, MLP width)
cell, trained by `train.recipes.train_factual_recall` through the shared launchers (local
single-thread worker processes on CPU, in-process otherwise).

Each cell reports the test accuracy at its best validation checkpoint, and whether it was
starved: it ended on its step budget short of the target while its validation accuracy still
rose (`train.recipes.starved`), so its failure may be the budget's, not the model's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from factlab.config import apply_overrides, flatten, to_dict
from factlab.launchers import make_launcher
from factlab.models.one_layer import OneLayerConfig
from factlab.runtime import derive_seed, progress
from factlab.tasks.factual_recall import RecallTaskConfig
from factlab.train.loop import TrainConfig
from factlab.train.recipes import build_knowledge_base, starved, train_factual_recall


def train_tradeoff_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Train one (seed, heads, width) cell; module-level so worker processes can run it."""
    task = apply_overrides(RecallTaskConfig(), flatten(cell["task"]))
    model = apply_overrides(OneLayerConfig(), flatten(cell["model"]))
    tcfg = apply_overrides(TrainConfig(), flatten(cell["train"]))
    h, m, seed = cell["heads"], cell["width"], cell["seed"]
    torch.set_num_threads(1)
    curve: list[tuple[int, float]] = []
    _, result = train_factual_recall(
        task, dataclasses.replace(model, n_heads=h, d_mlp=m), tcfg, derive_seed(seed, h, m),
        cell["device"], cell["n_test"], on_eval=lambda step, e: curve.append((step, e["acc"])),
        kb=build_knowledge_base(task))
    best = result.best_eval
    return {"acc": best.get("test_acc", 0.0), "val_acc": best.get("acc", 0.0),
            "best_step": best.get("step", 0), "steps": result.steps,
            "stop_reason": result.stop_reason,
            "starved": starved(result, curve, tcfg.target_acc or 1.0)}


def tradeoff_grid(task: RecallTaskConfig, model: OneLayerConfig, train_cfg: TrainConfig,
                  heads: Sequence[int], widths: Sequence[int], seeds: Sequence[int],
                  n_test: int, device: torch.device, workers: int = 0,
                  show_progress: bool = False) -> list[dict[str, Any]]:
    """Every (seed, heads, width) cell, one row each, sorted by (seed, heads, width).

    `workers`: local processes on CPU (0 = one per core, 1 = in this process). A cell that
    failed raises with its error.
    """
    base = {"task": to_dict(task), "model": to_dict(model), "train": to_dict(train_cfg),
            "n_test": n_test, "device": str(device)}
    cells = [{**base, "seed": s, "heads": h, "width": m}
             for s in seeds for h in heads for m in widths]
    serial = workers == 1 or device.type != "cpu"
    launcher = make_launcher("serial" if serial else "local", workers or None)
    rows = []
    for cell, res in progress(launcher.run(train_tradeoff_cell, cells), total=len(cells),
                              desc="recall-tradeoff", enabled=show_progress):
        if "acc" not in res:
            raise RuntimeError(f"cell seed={cell['seed']} H={cell['heads']} "
                               f"m={cell['width']}: {res.get('error')}")
        rows.append({"seed": cell["seed"], "heads": cell["heads"], "width": cell["width"],
                     "attn_params": model.d_model * model.d_head * cell["heads"],
                     "mlp_params": model.d_model * cell["width"], **res})
    return sorted(rows, key=lambda r: (r["seed"], r["heads"], r["width"]))  # order varies
