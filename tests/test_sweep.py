"""Sweeps: grid expansion, resume after kill -9, error cells, launcher agreement, ensembles."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from factlab.analysis.verdicts import Verdict, decide
from factlab.config import ConfigError, ExperimentConfig, require
from factlab.experiments.base import Experiment, RunContext
from factlab.runs.sweep import expand_grid, parse_axis, parse_seeds, plan_sweep, read_table, run_sweep
from factlab.runtime import make_generator

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _user_modules(monkeypatch):
    """The toys below are `test_sweep:NAME` targets, which a sweep imports only when asked."""
    monkeypatch.setenv("FACTLAB_ALLOW_MODULES", "1")


# A toy experiment: instant, seeded, and failing on demand (importable by spawned workers).
@dataclasses.dataclass
class ToyConfig(ExperimentConfig):
    """x scales the metric; the run raises when x == fail_at; sleep slows it down."""

    x: int = 1
    widths: tuple[int, ...] = (2,)
    fail_at: int = -1
    sleep: float = 0.0

    def check(self) -> None:
        super().check()
        require(self.x >= 0, "x", f"must be >= 0, got {self.x}")


def _toy_run(cfg: ToyConfig, ctx: RunContext) -> Verdict:
    if cfg.x == cfg.fail_at:
        raise RuntimeError(f"planted failure at x={cfg.x}")
    time.sleep(cfg.sleep)
    noise = torch.rand(1, generator=make_generator(cfg.seed)).item()
    value = 2 * cfg.x + noise
    ctx.log(0, "test", value=value)
    return decide(value > 1, f"value = {value:.3f}", {"value": value, "width": sum(cfg.widths)})


TOY = Experiment(name="toy", claim="value grows with x", config=ToyConfig, run=_toy_run,
                 figures=lambda run_dir: [])


def _keyed_run(cfg: ToyConfig, ctx: RunContext) -> Verdict:
    """Metrics keyed by the value of x (as capacity keys by d) and a list metric."""
    value = 2.0 * cfg.x + 0.1 * cfg.seed
    return decide(value > 1, f"value = {value:.1f}; seeds: 1 holds",
                  {"per_x": {str(cfg.x): value}, "curve": [value, value + 1], "total": value})


KEYED = Experiment(name="keyed", claim="value grows with x", config=ToyConfig, run=_keyed_run,
                   figures=lambda run_dir: [])


def test_axis_syntax():
    assert parse_axis("k", "a,b,c") == ["a", "b", "c"]
    assert parse_axis("k", "1:5") == ["1", "2", "3", "4", "5"]  # both ends included
    assert parse_axis("k", "1:9:4,20") == ["1", "5", "9", "20"]
    assert parse_axis("k", "[8,11]") == ["[8,11]"]  # one tuple value
    assert parse_axis("k", "[8,11],[16,22]") == ["[8,11]", "[16,22]"]
    assert parse_axis("device", "cuda:1") == ["cuda:1"]  # not a range
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ConfigError):
        parse_axis("k", "5:1")
    with pytest.raises(ConfigError):
        parse_seeds("4-2")
    assert expand_grid({"a": ["1", "2"], "b": ["x", "y", "z"]})[:2] == [
        {"a": "1", "b": "x"}, {"a": "1", "b": "y"}]


def test_plan_expands_tuple_fields_and_seeds(tmp_path):
    sweep = plan_sweep("capacity-linear", ["d=8,11", "train.lr=0.5"], seeds="0-2", out=tmp_path)
    assert len(sweep.cells) == 6 and len({c.run_id for c in sweep.cells}) == 6
    assert sorted({tuple(c.config["d"]) for c in sweep.cells}) == [(8,), (11,)]
    assert sorted(c.config["seeds"] for c in sweep.cells) == [[0], [0], [1], [1], [2], [2]]
    assert all(c.config["train"]["lr"] == 0.5 for c in sweep.cells)
    one = plan_sweep("capacity-linear", ["d=[8,11]"], seeds="0-1", out=tmp_path)
    assert [c.config["d"] for c in one.cells] == [[8, 11], [8, 11]]
    assert len(plan_sweep("capacity-linear", ["d=8,8"], out=tmp_path).cells) == 1
    with pytest.raises(ConfigError, match="unknown key"):
        plan_sweep("capacity-linear", ["nope=1,2"], out=tmp_path)
    with pytest.raises(ConfigError, match="in cell d=1"):  # refused before anything runs
        plan_sweep("capacity-linear", ["d=8,1"], out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_error_cells_are_recorded_and_others_finish(tmp_path):
    sweep = plan_sweep("test_sweep:TOY", ["x=1:3", "fail_at=2"], seeds="0-1", out=tmp_path)
    result = run_sweep(sweep, launcher="serial", quiet=True)
    assert result.counts == {"done": 4, "error": 2}
    rows = read_table(tmp_path / "results.csv")
    assert len(rows) == 6
    for row in rows:
        if row["x"] == 2:
            assert row["status"] == "error" and "planted failure at x=2" in row["error"]
            err = json.loads((tmp_path / row["run_id"] / "error.json").read_text())
            assert err["type"] == "RuntimeError" and "Traceback" in err["traceback"]
        else:
            assert row["status"] == "done" and row["metrics.value"] > 2 * row["x"]
    assert (tmp_path / "trend.png").exists()
    # A rerun retries only the failed cells; finished ones are untouched.
    done = {r["run_id"]: (tmp_path / r["run_id"] / "summary.json").stat().st_mtime_ns
            for r in rows if r["status"] == "done"}
    again = run_sweep(sweep, launcher="serial", quiet=True, figure=False)
    assert again.counts == {"done": 4, "error": 2}
    assert done == {rid: (tmp_path / rid / "summary.json").stat().st_mtime_ns for rid in done}


def test_kill_driver_then_resume(tmp_path):
    """kill -9 of the driver midway; the rerun completes with one row per cell, finished
    cells not recomputed, and the same table as a sweep that was never interrupted."""
    out = tmp_path / "sweep"
    args = ["x=1:6", "sleep=0.3"]
    script = ("import sys; from factlab.runs.sweep import plan_sweep, run_sweep; "
              f"run_sweep(plan_sweep('test_sweep:TOY', {args!r}, out={str(out)!r}), "
              "launcher='local', workers=2)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    driver = subprocess.Popen([sys.executable, "-c", script], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("*/summary.json"))) < 2:
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(0.5)  # the workers die with the driver (PDEATHSIG)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    assert 2 <= len(finished) < 6, "the kill should land midway"
    sweep = plan_sweep("test_sweep:TOY", args, out=out)
    result = run_sweep(sweep, launcher="local", workers=2, quiet=True)
    assert result.counts == {"done": 6}
    rows = read_table(out / "results.csv")
    assert sorted(r["run_id"] for r in rows) == sorted(c.run_id for c in sweep.cells)
    for rid, mtime in finished.items():
        assert (out / rid / "summary.json").stat().st_mtime_ns == mtime
    for c in sweep.cells:  # no torn or doubled metrics either
        assert len((out / c.run_id / "metrics.jsonl").read_text().splitlines()) == 1
    fresh = tmp_path / "fresh"
    run_sweep(plan_sweep("test_sweep:TOY", args, out=fresh), launcher="serial", quiet=True,
              figure=False)
    assert (fresh / "results.csv").read_text() == (out / "results.csv").read_text()


def _launcher_table(tmp_path: Path, launcher: str, **options) -> str:
    out = tmp_path / launcher
    # seeds come from the sweep's own axis (3 seeds x 2 d = 6 cells); giving `seeds=` as well
    # is refused by plan_sweep, so the test names them once
    sweep = plan_sweep("capacity-linear", ["d=6,8", "train.steps=300", "tolerance=1.3"],
                       seeds="0-2", out=out)
    result = run_sweep(sweep, launcher=launcher, workers=2, quiet=True, figure=False,
                       **options)
    assert result.counts == {"done": 6}
    return (out / "results.csv").read_text()


@pytest.mark.slow
def test_ray_and_submitit_tables_agree_with_local(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    pytest.importorskip("submitit")
    local = _launcher_table(tmp_path, "local")
    assert _launcher_table(tmp_path, "submitit", cluster="local") == local
    assert _launcher_table(tmp_path, "ray") == local


def test_ensemble_equals_separate_runs():
    """Stacked training of 4 seeds = 4 ordinary `train` runs, up to float tolerance."""
    from factlab.experiments.capacity import CapacityConfig
    from factlab.pipelines.capacity_search import train_memories_ensemble
    from factlab.train.recipes import train_memory

    cfg = CapacityConfig(seeds=(0,))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=300))
    seeds = [3, 5, 8, 13]
    for kind, n, lr in (("linear", 20, 1.0), ("mlp", 40, 0.03)):
        width = 16 if kind == "mlp" else 0
        together = train_memories_ensemble(kind, n, 8, width, lr, seeds, cfg,
                                           torch.device("cpu"))
        alone = [train_memory(kind, n, 8, width, lr, s, cfg, torch.device("cpu"))
                 for s in seeds]
        for (acc_e, steps_e), (acc_s, steps_s) in zip(together, alone):
            assert steps_e == steps_s
            assert acc_e == pytest.approx(acc_s, abs=1.5 / n)  # at most one argmax flip
        assert any(steps < cfg.train.steps for _, steps in alone)  # early stops covered


def test_capacity_ensemble_mode_logs_what_the_loop_logs(tmp_path):
    """capacity-linear ensemble=true (seeds' bisections in lockstep) = the loop, record for
    record."""
    from factlab.experiments.base import run_experiment
    from factlab.experiments.capacity import CAPACITY_LINEAR

    texts = []
    for flag in ("false", "true"):
        cfg = CAPACITY_LINEAR.make_config({"d": "6,8", "seeds": "0,1,2", "ensemble": flag,
                                           "train.steps": "200", "tolerance": "1.3"})
        run_experiment(CAPACITY_LINEAR, cfg, out=tmp_path / flag, show_progress=False)
        texts.append((tmp_path / flag / "metrics.jsonl").read_text())
    assert texts[0] == texts[1] and texts[0].count('"search"') > 6


def test_cli_sweep_refuses_bad_cells_and_extras_stay_optional(tmp_path, capsys):
    from factlab.cli import main

    assert main(["sweep", "capacity-linear", "d=8,1", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "d=1" in err
    assert main(["sweep", "capacity-linear", "--seeds", "3-1"]) == 2
    with pytest.raises(SystemExit) as exc:  # argparse's own one-line error
        main(["sweep", "capacity-linear", "d=8", "--launcher", "nope"])
    assert exc.value.code == 2
    code = ("import sys, factlab.cli, factlab.runs.sweep, factlab.launchers, "
            "factlab.train.ensemble; sys.exit(int(any(m in sys.modules for m in ('ray', 'submitit'))))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_generic_vmap_ensemble_matches_separate_training():
    """Ensemble(vmap) + train_ensemble on one-layer models = `train` per model (params)."""
    import torch.nn.functional as F

    from factlab.models.one_layer import OneLayerConfig, OneLayerTransformer
    from factlab.train.ensemble import Ensemble, train_ensemble
    from factlab.train.loop import TrainConfig, train

    cfg = OneLayerConfig(d_model=16, n_heads=2, d_head=4, d_mlp=8)
    tcfg = TrainConfig(optimizer="adam", lr=0.01, steps=25, eval_every=5, grad_clip=1.0)
    gen = torch.Generator().manual_seed(0)
    tokens, labels = torch.randint(0, 20, (32, 6), generator=gen), torch.arange(32) % 12
    make = lambda: [OneLayerTransformer(cfg, 20, 12, make_generator(s)) for s in range(3)]
    ens = Ensemble(make())

    def losses(step: int) -> torch.Tensor:
        logits = ens(tokens)  # [3, 32, 12]
        return torch.stack([F.cross_entropy(lg, labels) for lg in logits])

    results = train_ensemble(ens.trainable(), losses, tcfg)
    for i, model in enumerate(make()):
        alone = train(model.parameters(), lambda step, m=model: F.cross_entropy(m(tokens), labels),
                      tcfg, show_progress=False)
        assert results[i].steps == alone.steps == 25
        for name, p in model.named_parameters():
            assert torch.allclose(ens.member_state(i)[name], p.detach(), atol=1e-5), name


def test_tables_are_tidy(tmp_path):
    """results.csv: one plain value per cell (no JSON, no sparse per-value columns);
    metrics.csv: the per-value and list metrics as (run_id, metric, key, value) rows."""
    sweep = plan_sweep("test_sweep:KEYED", ["x=1:3", "widths=[2,3]"], seeds="0-1", out=tmp_path)
    run_sweep(sweep, launcher="serial", quiet=True)
    text = (tmp_path / "results.csv").read_text()
    header = text.splitlines()[0].split(",")
    assert not any(ch in text for ch in "[]{}\"")  # no JSON anywhere
    assert "metrics.total" in header and not [h for h in header if h.startswith("metrics.per_x")]
    assert not [h for h in header if h.startswith("metrics.curve")]
    rows = read_table(tmp_path / "results.csv")
    assert len(rows) == 6 and all(r["widths"] == [2, 3] for r in rows)  # "2;3" read back
    assert {r["seeds"] for r in rows} == {0, 1}  # a one-item list is the item
    assert all(r["evidence"].endswith("seeds: 1 holds") for r in rows)  # ';' text stays text
    long = read_table(tmp_path / "metrics.csv")
    assert list(long[0]) == ["run_id", "metric", "key", "value"]
    per_x = [r for r in long if r["metric"] == "per_x"]
    assert len(per_x) == 6 and {r["key"] for r in per_x} == {1, 2, 3}
    assert sorted(r["key"] for r in long if r["metric"] == "curve")[:2] == [0, 0]
    # the trend joins per_x.<x> back into one curve against x
    from factlab.report.trend import _join_families

    _join_families(rows, long, "x")
    assert [r["metrics.per_x"] for r in rows] == [r["metrics.total"] for r in rows]
    assert (tmp_path / "trend.png").is_file()
