"""The extraction variants: templates vs repeats (three-state verdict on planted records) and
relation-level questions (descriptive), plus the registry and `factlab show`. No training."""

from __future__ import annotations

import subprocess
import sys

import pytest

from factlab.config import ConfigError
from factlab.experiments import REGISTRY, get_experiment
from factlab.experiments import extraction_variants as EV
from factlab.report.papers import paper_of

BASE = {"stored_acc": 1.0, "retained_acc": 0.9, "chance_block": 0.125, "lr": 1e-3,
        "still_improving": False, "test_acc_cov_unseen": 0.3}


def _repeats_rows(rep: float, tem: float, seen: tuple[float, float] = (0.7, 0.75),
                  **per_seed: tuple) -> list[dict]:
    """Three seeds of K in {2, 4} x {repeats, templates}; per_seed[key] overrides a field."""
    rows = []
    for s in range(3):
        for k in (2, 4):
            for mode, acc, sn in (("repeats", rep, seen[0]), ("templates", tem, seen[1])):
                rows.append({**BASE, "K": k, "multiplicity_mode": mode, "seed": s,
                             "test_acc": acc, "test_acc_cov_seen": sn,
                             **{key: v[s] for key, v in per_seed.items()}})
    return rows


def test_repeats_verdict_holds_fails_inconclusive():
    assert EV.verdict_repeats(_repeats_rows(0.4, 0.75)).state == "holds"
    assert EV.verdict_repeats(_repeats_rows(0.5, 0.53)).state == "fails"  # gap under 0.05
    assert EV.verdict_repeats(_repeats_rows(0.6, 0.4)).state == "fails"  # wrong direction
    unstored = _repeats_rows(0.4, 0.75, stored_acc=(0.9, 0.9, 1.0))
    v = EV.verdict_repeats(unstored)
    assert v.state == "inconclusive" and "stored" in v.reason
    starved = _repeats_rows(0.5, 0.52, still_improving=(True, True, True))
    assert EV.verdict_repeats(starved).state == "inconclusive"


def test_repeats_verdict_reports_gap_with_seed_spread():
    rows = _repeats_rows(0.4, 0.75)
    for r in rows:  # seed 2 has a smaller gap: the spread must show it
        if r["seed"] == 2 and r["multiplicity_mode"] == "templates":
            r["test_acc"] = 0.6
    v = EV.verdict_repeats(rows)
    assert v.state == "holds"
    assert abs(v.metrics["gap"] - (0.7 - 0.4)) < 1e-9 and v.metrics["K"] == 4
    assert "gap 0.300 [0.200, 0.350] over 3 seeds" in v.evidence
    assert "seen_gap" in v.evidence and v.metrics["per_seed"]["2"]["gap"] == pytest.approx(0.2)


def test_question_is_descriptive_with_per_coverage_differences():
    rows = [{**BASE, "seed": s, "coverage": c, "question": q,
             "test_acc": {"template": 0.7, "relation": 0.5}[q] + 0.01 * s}
            for s in range(3) for c in (0.25, 1.0) for q in ("template", "relation")]
    v = EV.describe_question(rows)
    assert v.state == "descriptive" and v.holds is None
    assert v.metrics["c=0.25"]["diff"] == pytest.approx(-0.2)
    assert v.metrics["c=1"]["diff_seeds"] == pytest.approx([-0.2, -0.2, -0.2])
    assert "over 3 seeds" in v.evidence and "no claim" in v.evidence
    assert get_experiment("extraction-question").descriptive


def test_registry_presets_and_checks():
    for name in ("extraction-repeats", "extraction-question"):
        assert name in REGISTRY
        exp = get_experiment(name)
        assert exp.name == name and exp.figures is not None
        cfg = exp.make_config({"scale": "quick"})
        assert tuple(cfg.seeds) == (0, 1, 2)
        assert paper_of(name, exp)[0].arxiv == "2508.00901"
    assert not get_experiment("extraction-repeats").descriptive
    assert get_experiment("extraction-repeats").make_config({"scale": "quick"}).values == (4,)
    with pytest.raises(ConfigError):  # K = 1 is the same corpus in both modes
        get_experiment("extraction-repeats").make_config({"scale": "quick", "values": "1,4"})
    with pytest.raises(ConfigError):
        get_experiment("extraction-question").make_config({"scale": "quick", "coverages": "0"})


@pytest.mark.parametrize("name", ["extraction-repeats", "extraction-question"])
def test_factlab_show_lists_the_knobs(name):
    out = subprocess.run([sys.executable, "-m", "factlab", "show", name], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert name in out.stdout
    assert ("values" if name == "extraction-repeats" else "coverages") in out.stdout
