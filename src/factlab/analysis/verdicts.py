"""Three-state verdicts and the rule that combines seeds into one.

A claim's verdict is `holds`, `fails`, or `inconclusive` with a one-line reason saying why the
run could not decide. Experiments build one per seed from that seed's numbers and combine them
with `combine_seeds`, a rule fixed here, before any run: the claim holds (fails) when the verdict
on the seed mean holds (fails) and at least two thirds of the seeds agree; anything else is
inconclusive, with the disagreement as its reason.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

State = Literal["holds", "fails", "inconclusive", "descriptive"]
STATES: tuple[str, ...] = ("holds", "fails", "inconclusive", "descriptive")


@dataclasses.dataclass
class Verdict:
    """The computed answer to a claim: its state, the one-line evidence, and the metrics.

    `reason` is required when the state is inconclusive (what kept the run from deciding).
    """

    state: State
    evidence: str
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    reason: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"verdict state must be one of {STATES}, got {self.state!r}")
        if self.state == "inconclusive" and not self.reason:
            raise ValueError("an inconclusive verdict needs its one-line reason")

    @property
    def holds(self) -> bool | None:
        """True / False when decided, None when inconclusive or descriptive (old readers)."""
        return {"holds": True, "fails": False}.get(self.state)

    def summary_fields(self) -> dict[str, Any]:
        """The verdict's keys of summary.json."""
        return {"verdict": self.state, "holds": self.holds, "reason": self.reason,
                "evidence": self.evidence, "metrics": self.metrics}


def decide(ok: bool, evidence: str, metrics: dict[str, Any] | None = None) -> Verdict:
    """holds if `ok`, else fails."""
    return Verdict("holds" if ok else "fails", evidence, dict(metrics or {}))


def inconclusive(reason: str, evidence: str = "",
                 metrics: dict[str, Any] | None = None) -> Verdict:
    """A run that could not decide, with the one-line reason."""
    return Verdict("inconclusive", evidence or reason, dict(metrics or {}), reason)


def spread(values: Sequence[float], fmt: str = ".3f") -> str:
    """'mean [min, max] over n seeds' for the evidence line (NaNs counted, not averaged)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return f"nan over {len(values)} seeds"
    mean = sum(finite) / len(finite)
    text = f"{mean:{fmt}} [{min(finite):{fmt}}, {max(finite):{fmt}}] over {len(values)} seeds"
    return text if len(finite) == len(values) else f"{text} ({len(values) - len(finite)} nan)"


def combine_seeds(mean: Verdict, per_seed: Sequence[Verdict], evidence: str,
                  metrics: dict[str, Any] | None = None, quorum: float = 2 / 3) -> Verdict:
    """One verdict from the verdict on the seed mean and the verdicts of each seed.

    holds/fails when `mean` is decided and at least `quorum` of the seeds (rounded up) share
    its state; inconclusive otherwise: when `mean` is (its reason is kept), or when the seeds
    disagree.
    """
    metrics = dict(mean.metrics, **(metrics or {}))
    states = [v.state for v in per_seed]
    tally = ", ".join(f"{states.count(s)} {s}" for s in ("holds", "fails", "inconclusive")
                      if s in states)
    evidence = f"{evidence}; seeds: {tally}"
    metrics["seed_verdicts"] = states
    if mean.state == "inconclusive":
        return Verdict("inconclusive", evidence, metrics, mean.reason)
    need = math.ceil(quorum * len(per_seed) - 1e-9)
    if states.count(mean.state) >= need:
        return Verdict(mean.state, evidence, metrics)
    return Verdict("inconclusive", evidence, metrics,
                   f"seeds disagree ({tally}); fewer than {need} of {len(per_seed)} "
                   f"agree with the mean's {mean.state}")
