"""The experiment registry: name -> "module:attribute", imported on demand."""

from __future__ import annotations

import importlib

from factlab.config import ConfigError
from factlab.experiments.base import Experiment

REGISTRY: dict[str, str] = {
    "extraction": "factlab.experiments.extraction:EXTRACTION",
    "extraction-acquisition": "factlab.experiments.extraction:EXTRACTION_ACQUISITION",
    "extraction-multiplicity":
        "factlab.experiments.extraction_trends:EXTRACTION_MULTIPLICITY",
    "extraction-coverage": "factlab.experiments.extraction_trends:EXTRACTION_COVERAGE",
    "extraction-universe": "factlab.experiments.extraction_trends:EXTRACTION_UNIVERSE",
    "extraction-size": "factlab.experiments.extraction_trends:EXTRACTION_SIZE",
    "extraction-lora": "factlab.experiments.extraction_lora:EXTRACTION_LORA",
    "extraction-schedule": "factlab.experiments.extraction_training:EXTRACTION_SCHEDULE",
    "extraction-attention-only":
        "factlab.experiments.extraction_training:EXTRACTION_ATTENTION_ONLY",
    "extraction-repeats": "factlab.experiments.extraction_variants:EXTRACTION_REPEATS",
    "extraction-question": "factlab.experiments.extraction_variants:EXTRACTION_QUESTION",
    "capacity-linear": "factlab.experiments.capacity:CAPACITY_LINEAR",
    "capacity-mlp": "factlab.experiments.capacity:CAPACITY_MLP",
    "recall-tradeoff": "factlab.experiments.tradeoff:RECALL_TRADEOFF",
    "recall-sequential": "factlab.experiments.sequential:RECALL_SEQUENTIAL",
    "ic-recall": "factlab.experiments.ic_recall:IC_RECALL",
    "ic-recall-samples": "factlab.experiments.ic_recall_samples:IC_RECALL_SAMPLES",
    "ic-recall-pretrained": "factlab.experiments.ic_recall:IC_RECALL_PRETRAINED",
    "ic-recall-shared-pool": "factlab.experiments.ic_recall_ablations:IC_RECALL_SHARED_POOL",
    "ic-recall-m2": "factlab.experiments.ic_recall_ablations:IC_RECALL_M2",
    "ic-recall-context": "factlab.experiments.ic_recall_context:IC_RECALL_CONTEXT",
    "ic-recall-init": "factlab.experiments.ic_recall_init:IC_RECALL_INIT",
    "induction-head": "factlab.experiments.induction:INDUCTION_HEAD",
    "induction-depth": "factlab.experiments.induction:INDUCTION_DEPTH",
    "induction-standard": "factlab.experiments.standard:INDUCTION_STANDARD",
    "hijack-length": "factlab.experiments.hijack:HIJACK_LENGTH",
    "hijack-prompts": "factlab.experiments.hijack:HIJACK_PROMPTS",
    "popqa-extraction": "factlab.experiments.popqa:POPQA_EXTRACTION",
    "bios": "factlab.experiments.bios:BIOS",
}


def get_experiment(name: str) -> Experiment:
    """The experiment called `name`, or a one-line `ConfigError` listing the known ones."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(sorted(REGISTRY))}")
    module, attr = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attr)


def all_experiments() -> list[Experiment]:
    """Every registered experiment, sorted by name."""
    return [get_experiment(n) for n in sorted(REGISTRY)]
