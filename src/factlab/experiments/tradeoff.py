"""Attention/MLP trade-off on factual recall (arXiv 2412.06538 Fig. 4 right; spec §8.4).

Train the one-layer model on Task A for every (heads H, MLP width m) cell of a grid and record
the best test accuracy. The claim is that attention and MLP parameters substitute for each
other: the success frontier runs diagonally, so more heads need less MLP width.

Judged on the frontier m_min(H) = the smallest grid width reaching THRESHOLD at H heads.
The claim holds when (1) at least MIN_FRONTIER heads values succeed somewhere, (2) the
frontier's MLP parameters fall as attention parameters grow (Spearman rank correlation
<= MAX_SPEARMAN), and (3) it moves by at least MIN_SPAN x in MLP parameters. A frontier along
one axis (a fixed width needed whatever H, or no width helping) fails (2) or (3).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from factlab.analysis.stats import spearman
from factlab.analysis.verdicts import Verdict, decide
from factlab.config import ExperimentConfig, apply_overrides, flatten, require, to_dict
from factlab.experiments.base import Experiment, RunContext
from factlab.models.one_layer import OneLayerConfig
from factlab.report.style import paper_style, save_figure
from factlab.runs.launchers import make_launcher
from factlab.runtime import derive_seed, progress
from factlab.store.run_dir import read_split
from factlab.tasks.factual_recall import RecallTaskConfig
from factlab.train.loop import TrainConfig
from factlab.train.recipes import build_knowledge_base, train_factual_recall

THRESHOLD = 0.99  # the paper's success criterion
MIN_FRONTIER = 3  # frontier points needed to speak of a direction
MAX_SPEARMAN = -0.8  # the frontier must clearly descend
MIN_SPAN = 2.0  # ... by at least this factor in MLP parameters


@dataclasses.dataclass
class TradeoffConfig(ExperimentConfig):
    """Task A, the fixed model sizes, the (heads x width) grid and training."""

    task: RecallTaskConfig = dataclasses.field(default_factory=lambda: RecallTaskConfig(
        n_subjects=16, n_relations=16, n_answers=8, n_noise=32, seq_len=8))
    model: OneLayerConfig = dataclasses.field(default_factory=lambda: OneLayerConfig(
        d_model=32, d_head=8))
    heads: tuple[int, ...] = (1, 2, 4, 8)
    widths: tuple[int, ...] = (4, 16, 32, 64, 128)
    n_test: int = 1024
    workers: int = 0  # cells train in this many single-thread processes; 0 = one per core
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="adamw", lr=1e-2, steps=2000, batch_size=512, eval_every=100,
        target_acc=THRESHOLD))

    def check(self) -> None:
        super().check()
        require(len(self.heads) >= 1 and min(self.heads) >= 1, "heads", "every H must be >= 1")
        require(len(self.widths) >= 1 and min(self.widths) >= 0, "widths",
                "every width must be >= 0")
        require(self.n_test >= 1, "n_test", "must be >= 1")
        require(self.workers >= 0, "workers", "must be >= 0 (0 = one per core)")


def train_cell(task: dict) -> dict:
    """Train one (heads, width) cell; module-level so worker processes can run it."""
    cfg = apply_overrides(TradeoffConfig(), flatten(task["config"]))
    h, m = task["heads"], task["width"]
    model_cfg = dataclasses.replace(cfg.model, n_heads=h, d_mlp=m)
    _, result = train_factual_recall(cfg.task, model_cfg, cfg.train, derive_seed(cfg.seed, h, m),
                                     task["device"], cfg.n_test,
                                     kb=build_knowledge_base(cfg.task))
    return {"acc": result.best_eval.get("acc", 0.0), "steps": result.steps,
            "diverged": result.diverged}


def run(cfg: TradeoffConfig, ctx: RunContext) -> Verdict:
    """Train every grid cell (in parallel processes on CPU) and judge the frontier."""
    tasks = [{"config": to_dict(cfg), "heads": h, "width": m, "device": str(ctx.device)}
             for h in cfg.heads for m in cfg.widths]
    serial = cfg.workers == 1 or ctx.device.type != "cpu"
    launcher = make_launcher("serial" if serial else "local", cfg.workers or None)
    results = {}
    for task, res in progress(launcher.run(train_cell, tasks), total=len(tasks),
                              desc="recall-tradeoff", enabled=ctx.show_progress):
        if "acc" not in res:
            raise RuntimeError(f"cell H={task['heads']} m={task['width']}: {res.get('error')}")
        results[task["heads"], task["width"]] = res
    d, dh = cfg.model.d_model, cfg.model.d_head
    for i, ((h, m), res) in enumerate(sorted(results.items())):  # completion order varies
        ctx.log(i, "grid", heads=h, width=m, attn_params=d * dh * h, mlp_params=d * m, **res)
    return judge({k: r["acc"] for k, r in results.items()}, d, dh)


def frontier(acc: dict[tuple[int, int], float]) -> dict[int, int]:
    """H -> the smallest width whose accuracy reaches THRESHOLD (heads with none left out)."""
    out = {}
    for h in sorted({h for h, _ in acc}):
        ok = sorted(m for (hh, m), a in acc.items() if hh == h and a >= THRESHOLD)
        if ok:
            out[h] = ok[0]
    return out


def judge(acc: dict[tuple[int, int], float], d: int, d_head: int) -> Verdict:
    """The verdict from the grid of accuracies."""
    front = frontier(acc)
    x = np.array([d * d_head * h for h in front], float)
    y = np.array([d * m for m in front.values()], float)
    rho = spearman(x, y) if len(front) >= 2 else float("nan")
    rho = 0.0 if np.isnan(rho) else rho  # a constant side is no trend at all
    span = float(y.max() / max(y.min(), 1.0)) if len(front) else 0.0
    holds = len(front) >= MIN_FRONTIER and rho <= MAX_SPEARMAN and span >= MIN_SPAN
    pts = ", ".join(f"H={h}:m={m}" for h, m in front.items()) or "none"
    evidence = (f"frontier (smallest width reaching {THRESHOLD}) {pts}; Spearman(attn, mlp "
                f"params) = {rho:.2f} (needs <= {MAX_SPEARMAN}), MLP span {span:.1f}x "
                f"(needs >= {MIN_SPAN}), {len(front)} points (needs >= {MIN_FRONTIER})")
    metrics = {"frontier": {str(h): m for h, m in front.items()}, "spearman": rho,
               "mlp_span": span, "n_success": int(sum(a >= THRESHOLD for a in acc.values())),
               "n_cells": len(acc)}
    return decide(holds, evidence, metrics)


def figures(run_dir: Path) -> list[Path]:
    """Accuracy heat-map over (attention params, MLP params) with the frontier marked."""
    import matplotlib.pyplot as plt

    rows = read_split(run_dir, "grid")
    if not rows:
        return []
    cfg = json.loads((run_dir / "config.json").read_text())
    xs = sorted({r["attn_params"] for r in rows})
    ys = sorted({r["mlp_params"] for r in rows})
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in rows:
        grid[ys.index(r["mlp_params"]), xs.index(r["attn_params"])] = r["acc"]
    front = frontier({(r["heads"], r["width"]): r["acc"] for r in rows})
    d, dh = cfg["model"]["d_model"], cfg["model"]["d_head"]
    with paper_style():
        fig, ax = plt.subplots(figsize=(3.6, 3.0))
        im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
        fx = [xs.index(d * dh * h) for h in front]
        fy = [ys.index(d * m) for m in front.values()]
        ax.plot(fx, fy, "w--o", ms=3, lw=1, label=f"frontier (acc >= {THRESHOLD})")
        ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_yticks(range(len(ys)), [str(v) for v in ys])
        ax.set(xlabel="attention parameters d d_h H", ylabel="MLP parameters d m",
               title=f"{cfg['task']['n_subjects'] * cfg['task']['n_relations']} facts")
        ax.grid(False)
        ax.legend(loc="upper right", fontsize=6)
        fig.colorbar(im, ax=ax, label="test accuracy")
        return [save_figure(fig, run_dir, "tradeoff")]


RECALL_TRADEOFF = Experiment(
    name="recall-tradeoff",
    claim="On factual recall, attention and MLP parameters substitute for each other: the "
          "success frontier over (heads x MLP width) runs diagonally, not along one axis.",
    config=TradeoffConfig,
    run=run,
    figures=figures,
    presets={"paper": {
        "task.n_subjects": 32, "task.n_relations": 32, "task.n_answers": 8,
        "task.n_noise": 64, "task.seq_len": 32, "model.d_model": 32, "model.d_head": 8,
        "heads": "1,2,4,6,8,10,12,14,16,20,24,28,32",
        "widths": "1,8,16,24,32,40,48,56,64,80,96,112,128",
        "train.steps": 16384, "train.batch_size": 1024, "train.eval_every": 128}},
)
