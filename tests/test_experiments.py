"""Experiments end to end: run store, verdicts from numbers, determinism, figure redraw."""

import json

import numpy as np

from factlab.analysis.search import bisect_largest
from factlab.cli import main
from factlab.experiments import all_experiments, get_experiment
from factlab.experiments.base import run_experiment
from factlab.experiments.capacity import fit_slope
from factlab.experiments.sequential import judge as judge_sequential
from factlab.experiments.tradeoff import judge as judge_tradeoff

TINY_CAPACITY = {"d": "8,16", "seeds": "0", "tolerance": 1.3, "train.steps": 300}


def test_capacity_run_writes_the_store_and_a_computed_verdict(tmp_path):
    exp = get_experiment("capacity-linear")
    summary = run_experiment(exp, exp.make_config(TINY_CAPACITY), tmp_path / "run",
                             show_progress=False)
    run = tmp_path / "run"
    stored = json.loads((run / "summary.json").read_text())
    assert stored == summary
    for key in ("experiment", "claim", "holds", "evidence", "metrics", "wall_time_s"):
        assert key in stored
    assert (run / "capacity.png").exists() and (run / "capacity.pdf").exists()
    config = json.loads((run / "config.json").read_text())
    assert config["experiment"] == "capacity-linear" and config["d"] == [8, 16]
    caps = stored["metrics"]["capacity"]["linear"]
    assert caps["16"] > caps["8"] >= 8  # a bigger memory stores more
    slope = stored["metrics"]["slope"]["linear"]
    assert stored["holds"] == (0.70 <= slope <= 1.10)


def test_same_config_and_seed_give_identical_metrics(tmp_path):
    exp = get_experiment("capacity-mlp")
    cfg = exp.make_config({**TINY_CAPACITY, "d": "8"})
    run_experiment(exp, cfg, tmp_path / "a", show_progress=False)
    run_experiment(exp, cfg, tmp_path / "b", show_progress=False)
    a = (tmp_path / "a" / "metrics.jsonl").read_text()
    assert a and a == (tmp_path / "b" / "metrics.jsonl").read_text()


def test_report_redraws_figures_from_the_store(tmp_path, capsys):
    exp = get_experiment("capacity-linear")
    run_experiment(exp, exp.make_config({**TINY_CAPACITY, "d": "8"}), tmp_path,
                   show_progress=False)
    (tmp_path / "capacity.png").unlink()
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "capacity.png").exists()


def test_cli_run_prints_claim_verdict_evidence_last(tmp_path, capsys):
    assert main(["run", "capacity-linear", "d=8", "seeds=0", "train.steps=200",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3].startswith("claim:") and lines[-2].startswith("verdict:")
    assert lines[-1].startswith("evidence:")


def test_every_experiment_has_a_claim_and_a_valid_default_config():
    for exp in all_experiments():
        assert exp.claim and exp.make_config({}) is not None
        assert exp.make_config({"scale": "paper"}).scale == "paper"


def test_bisection_finds_the_largest_success():
    assert bisect_largest(10, 1000, lambda n: n <= 137, 1.0001) == 137
    assert bisect_largest(10, 1000, lambda n: n <= 5, 1.0001) == 5  # below the bracket
    assert bisect_largest(10, 1000, lambda n: True, 1.01) == 1000
    got = bisect_largest(10, 1000, lambda n: n <= 137, 1.05)
    assert 137 / 1.05 <= got <= 137


def test_slope_fit_recovers_a_power_law():
    p = np.array([64.0, 256, 1024, 4096])
    assert abs(fit_slope(p, 3 * p**0.85) - 0.85) < 1e-9


def _curve(rel, total, steps):
    return [{"step": s, "loss": t, "loss_relation": r, "loss_subject": t, "acc": 0.0}
            for s, r, t in zip(steps, rel, total)]


def test_sequential_verdict_detects_a_planted_plateau_and_rejects_none():
    log_d = np.log(8)
    steps = list(range(0, 1000, 50))
    rel = [1.4] * 4 + [0.05] * 10 + [0.01] * 6
    total = [3.4] * 4 + [log_d] * 10 + [0.05] * 6
    verdict = judge_sequential(_curve(rel, total, steps), log_d, 1000)
    assert verdict.holds and verdict.metrics["plateau_start"] == 200
    assert verdict.metrics["plateau_end"] == 650
    # Relation and subject learned together: no plateau near log D.
    direct = judge_sequential(_curve([1.4] * 4 + [0.01] * 16, [3.4] * 4 + [0.05] * 16, steps),
                              log_d, 1000)
    assert not direct.holds and direct.metrics["plateau_steps"] == 0
    # Plateau but never converges.
    stuck = judge_sequential(_curve(rel[:14] + [0.05] * 6, total[:14] + [log_d] * 6, steps),
                             log_d, 1000)
    assert not stuck.holds


def test_tradeoff_verdict_tells_diagonal_from_axis_aligned():
    heads, widths = (1, 2, 4, 8), (4, 8, 16, 32)
    diagonal = {(h, m): float(h * m >= 32) for h in heads for m in widths}
    assert judge_tradeoff(diagonal, 16, 4).holds
    axis = {(h, m): float(m >= 16) for h in heads for m in widths}  # width alone matters
    verdict = judge_tradeoff(axis, 16, 4)
    assert not verdict.holds and verdict.metrics["spearman"] == 0.0
    nothing = {(h, m): 0.2 for h in heads for m in widths}
    assert not judge_tradeoff(nothing, 16, 4).holds


def test_recall_sequential_finds_the_hallucination_plateau(tmp_path):
    """The paper's §8.5 run (smaller batch and test set): relation first, then subject."""
    exp = get_experiment("recall-sequential")
    cfg = exp.make_config({"train.batch_size": 256, "n_test": 1024})
    summary = run_experiment(exp, cfg, tmp_path, show_progress=False)
    m = summary["metrics"]
    assert summary["holds"], summary["evidence"]
    assert 1000 <= m["plateau_start"] < m["plateau_end"] <= 6000  # paper: ~1800-5000
    assert m["final_acc"] == 1.0
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "sequential.png").exists()
