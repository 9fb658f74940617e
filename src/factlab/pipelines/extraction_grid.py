"""Grids of extraction pipelines: every cell x every seed, one pre-training per distinct setup.

A cell is a label dict (what the figure and the verdict group by) and the `ExtractionConfig`
it runs. Cells whose pre-training is the same (same facts, templates, layout, model and
pre-training recipe: coverage, fine-tuning size and the fine-tuning method do not enter it)
share one pre-trained model per seed, and each is fine-tuned from a copy of it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import torch

from factlab.config import to_dict
from factlab.pipelines.extraction import ExtractionConfig, finetune_copy, pretrained_model

Cell = tuple[dict[str, Any], ExtractionConfig]
# corpus fields that only the fine-tuning set reads
_FINETUNE_ONLY = ("coverage", "coverage_mode", "n_finetune", "question")


def pretrain_key(cfg: ExtractionConfig) -> str:
    """What the pre-trained model depends on, as a string (equal strings share a model)."""
    corpus = {k: v for k, v in to_dict(cfg.corpus).items() if k not in _FINETUNE_ONLY}
    return json.dumps({"corpus": corpus, "model": to_dict(cfg.model),
                       "pretrain": to_dict(cfg.pretrain), "schedule": cfg.pretrain_schedule},
                      sort_keys=True)


def scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The loggable fields of a metrics dict: numbers, flags, strings and lists of numbers."""
    return {k: v for k, v in metrics.items() if not isinstance(v, torch.Tensor)}


def sweep(cells: Sequence[Cell], seeds: Sequence[int], device: torch.device,
          on_row: Callable[[dict[str, Any]], None] | None = None,
          finetune: bool = True,
          on_pretrain: Callable[[dict[str, Any], int, int, dict], None] | None = None,
          ) -> list[dict[str, Any]]:
    """Run every cell for every seed; return one flat record per (cell, seed).

    With `finetune=False` only pre-training runs (its numbers are the record). `on_row` sees
    each record as it is made (to log it); `on_pretrain(labels, seed, step, metrics)` sees
    the pre-training evaluations of the first cell of each shared setup.
    """
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        models: dict[str, tuple[torch.nn.Module, dict[str, Any]]] = {}
        for labels, cfg in cells:
            key = pretrain_key(cfg)
            if key not in models:
                log = None
                if on_pretrain is not None:
                    def log(step: int, m: dict, labels: dict = labels, seed: int = seed) -> None:
                        on_pretrain(labels, seed, step, m)
                models[key] = pretrained_model(cfg, seed, device, log)
            model, pre = models[key]
            out = dict(pre)
            if finetune:
                out.update(finetune_copy(model, cfg, seed, device))
            row = {**labels, "seed": seed, **scalars(out)}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def with_corpus(cfg: ExtractionConfig, **changes: Any) -> ExtractionConfig:
    """`cfg` with corpus fields replaced."""
    return dataclasses.replace(cfg, corpus=dataclasses.replace(cfg.corpus, **changes))
