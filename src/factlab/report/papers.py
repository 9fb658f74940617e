"""Which paper each claim reproduces, and whether its setting is our reconstruction.

An `Experiment` may declare `paper=(arxiv_id, title)` and `reconstruction=...` itself; for the
ones that do not, this table maps experiment-name prefixes to their paper, so the report can
group claims without every family changing. "Reconstruction" marks a claim whose setting
(task, model or budget) is our own design where the paper states none: its verdict is about our
setting, not a replication of the paper's exact experiment.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Paper:
    """A paper by arXiv id and title."""

    arxiv: str
    title: str

    @property
    def url(self) -> str:
        """The abstract page (a link in the report; nothing is fetched)."""
        return f"https://arxiv.org/abs/{self.arxiv}"


NICHANI = Paper("2412.06538", "Understanding Factual Recall in Transformers via Associative "
                "Memories")
HUANG = Paper("2605.27774", "Fine-Tuning Dynamics of In-Context Factual Recall in Transformers")
XU = Paper("2508.00901", "Provable Knowledge Acquisition and Extraction in One-Layer "
           "Transformers")
PHYSICS31 = Paper("2309.14316", "Physics of Language Models: Part 3.1, Knowledge Storage and "
                  "Extraction")
BIRTH = Paper("2306.00802", "Birth of a Transformer: A Memory Viewpoint")
HIJACK = Paper("2412.11459", "Rethinking Associative Memory Mechanism in Induction Head")
UNKNOWN = Paper("", "Other claims")

# name prefix -> (paper, reconstruction); the longest matching prefix wins.
PREFIXES: dict[str, tuple[Paper, bool]] = {
    "capacity-": (NICHANI, False),
    "recall-": (NICHANI, False),
    "ic-recall": (HUANG, True),
    "extraction": (XU, True),
    "popqa-": (XU, True),
    "bios": (PHYSICS31, True),
    "induction-": (BIRTH, False),
    "hijack-": (HIJACK, True),
}


def paper_of(name: str, exp: Any = None) -> tuple[Paper, bool]:
    """(paper, reconstruction) of experiment `name`: the experiment's own, else the table's."""
    declared = getattr(exp, "paper", None)
    recon = getattr(exp, "reconstruction", None)
    match = max((p for p in PREFIXES if name.startswith(p)), key=len, default=None)
    paper, table_recon = PREFIXES[match] if match else (UNKNOWN, False)
    if declared:
        paper = Paper(*declared)
    return paper, table_recon if recon is None else bool(recon)
