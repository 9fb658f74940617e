"""IC-recall ablations with verdicts: the context size k (calibration and rule)."""

from __future__ import annotations

import json

import pytest

from factlab.config import ConfigError
from factlab.experiments import get_experiment
from factlab.experiments.base import run_experiment
from factlab.experiments.ic_recall_context import context_verdict, margin_pattern
from factlab.experiments.ic_recall_init import init_verdict
from factlab.models.ic_memory import calibrate


def test_margin_pattern_ties_the_rivals_and_grows_with_k():
    margins = []
    for k in (1, 2, 4, 8, 16):
        gamma, kbeta = margin_pattern(k)
        assert gamma + 2 * kbeta == pytest.approx(1.0)  # the whole softmax budget
        assert gamma == pytest.approx(kbeta / k + kbeta)  # both rivals read the same
        calibrate(gamma, kbeta, k)  # every k is calibratable
        margins.append(gamma + kbeta - max(gamma, kbeta / k + kbeta))
    assert margins == sorted(margins) and margins[0] == pytest.approx(0.25)
    with pytest.raises(ConfigError):  # ic-recall's fixed pattern has no margin at k = 1
        calibrate(1 / 3, 1 / 3, 1)


def _rec(acc: float, n: int = 4000, starved: bool = False) -> dict:
    return {"hits_seen": round(acc * n), "n_seen": n, "hits_heldout": 0, "n_heldout": 0,
            "still_improving": starved}


def test_context_verdict_three_states():
    good = {1: 1.0, 2: 1.0, 4: 1.0}
    rising = {1: _rec(0.90), 2: _rec(0.95), 4: _rec(0.99)}
    assert context_verdict(rising, good).state == "holds"
    falling = {1: _rec(0.90), 2: _rec(0.99), 4: _rec(0.95)}
    v = context_verdict(falling, good)
    assert v.state == "fails" and "k=4" in v.evidence
    saturated = {1: _rec(1.0), 2: _rec(1.0), 4: _rec(1.0)}
    assert context_verdict(saturated, good).state == "inconclusive"
    assert context_verdict(rising, {1: 0.95, 2: 1.0, 4: 1.0}).state == "inconclusive"
    starved = {1: _rec(0.90, starved=True), 2: _rec(0.95), 4: _rec(0.99)}
    assert context_verdict(starved, good).state == "inconclusive"
    few = {1: _rec(0.90, n=20), 2: _rec(0.95, n=20), 4: _rec(1.0, n=20)}
    assert context_verdict(few, good).state == "inconclusive"  # intervals overlap


def test_context_run_end_to_end(tmp_path):
    exp = get_experiment("ic-recall-context")
    cfg = exp.make_config({"ks": "1,4", "task.n_subjects": 32, "task.n_answers": 4,
                           "model.d_model": 128, "n_prompts": 512, "seeds": "0",
                           "protocol.n_val": 128, "protocol.min_steps": 100,
                           "protocol.epochs": 1, "train.eval_every": 25})
    run_experiment(exp, cfg, tmp_path, show_progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdict"] in ("holds", "fails", "inconclusive")
    assert set(summary["metrics"]["acc"]) == {"1", "4"}
    assert (tmp_path / "ic_context.png").exists()
    with pytest.raises(ConfigError):
        exp.make_config({"ks": "4,1"})


def _prec(asym: float, spread_: float = 0.6, alpha_q: float = 0.44, starved: bool = False,
          acc: float = 0.98) -> dict:
    return {"asym": asym, "spread": spread_, "alpha_q": alpha_q, "A_S": 0.3, "A_A": 0.3,
            "null_asym": 0.01,
            "null_spread": 0.01, "k": 8, "still_improving": starved, "acc_all": acc,
            "hits_seen": 98, "n_seen": 100, "hits_heldout": 0, "n_heldout": 0}


def test_init_verdict_three_states():
    zero = [_prec(0.14), _prec(0.15), _prec(0.13)]
    assert init_verdict(zero, [_prec(0.10), _prec(0.12), _prec(0.11)]).state == "holds"
    v = init_verdict(zero, [_prec(0.30), _prec(0.31), _prec(0.29)])
    assert v.state == "fails" and "asym" in v.reason + v.evidence
    # mean +0.11, but one seed far up and two a little down: the seeds do not agree
    assert init_verdict(zero, [_prec(0.60), _prec(0.10), _prec(0.05)]).state == "inconclusive"
    starved = [_prec(0.14, starved=True), _prec(0.15), _prec(0.13)]
    assert init_verdict(starved, zero).state == "inconclusive"
    pairwise = [_prec(0.14, spread_=0.2)] * 3  # under the limit (~0.5): a different reading
    assert init_verdict(zero, pairwise).state == "fails"
