"""Reliability (docs/reliability.md): the divergence guard, one-line errors with documented exit
codes, one writer per run directory, "done" means a summary that parses, strict sweeps, and
runs whose bytes do not depend on the load of the machine.

A toy experiment (one parameter, a few steps) exercises the run directory paths in well under a
second; registered experiments are run only where the claim is about them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from factlab.analysis.verdicts import decide
from factlab.cli import main
from factlab.config import ConfigError, ExperimentConfig, flatten, load_config_file, to_dict
from factlab.errors import describe
from factlab.experiments import REGISTRY, get_experiment
from factlab.experiments.base import Experiment, RunContext, run_experiment
from factlab.runs.sweep import check_metrics, plan_sweep, run_sweep
from factlab.store.run_dir import RunBusyError, RunStore, summary_ok, write_json_atomic
from factlab.train.loop import DivergenceError, TrainConfig, train


@dataclasses.dataclass
class ToyConfig(ExperimentConfig):
    """One parameter pulled to a target: a run in milliseconds."""

    seeds: tuple[int, ...] = (0,)
    target: float = 1.0
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        optimizer="sgd", lr=0.1, steps=20, eval_every=5))


def _toy_run(cfg: ToyConfig, ctx: RunContext):
    p = torch.nn.Parameter(torch.zeros(()))
    result = train([p], lambda step: (p - cfg.target) ** 2, cfg.train,
                   lambda: {"loss": float((p.detach() - cfg.target) ** 2)},
                   on_eval=lambda step, m: ctx.log(step, "eval", **m))
    return decide(result.last_eval["loss"] < 1.0, f"loss {result.last_eval['loss']:.3g}")


TOY = Experiment("toy", "a parameter reaches its target", ToyConfig, _toy_run,
                 lambda run_dir: [])


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


# ------------------------------------------------------------------------ divergence guard


def test_divergent_toy_run_leaves_failed_json_and_no_summary(tmp_path):
    cfg = TOY.make_config({"train.lr": "1e30"})
    with pytest.raises(DivergenceError):
        run_experiment(TOY, cfg, out=tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()
    failed = json.loads((tmp_path / "run" / "failed.json").read_text())
    assert failed["status"] == "failed" and "train.lr" in failed["error"]


def _divergent_overrides(name: str) -> list[str]:
    """Every learning-rate knob of the experiment at a divergent value, one seed."""
    cfg = get_experiment(name).make_config()
    keys = [k for k in flatten(to_dict(cfg))
            if k.rsplit(".", 1)[-1].endswith(("lr", "lrs", "lr_grid"))]
    return [f"{k}={DIVERGENT_LR.get(name, '1e30')}" for k in keys] + ["seeds=0"]


# Only W_QK (and W_OV) train and the output goes through a frozen memory: the loss stays
# bounded at lr=1e30, so nothing goes non-finite; at 1e38 Adam's first update overflows float32,
# which the loop reports as divergence (train.loop.optimizer_step).
DIVERGENT_LR = {name: "1e38" for name in ("ic-recall", "ic-recall-shared-pool", "ic-recall-m2",
                                           "ic-recall-context", "ic-recall-init")}


QUICK_FAMILIES = {"capacity-linear": ["d=8"], "recall-sequential": [], "ic-recall": [],
                  "induction-head": ["train.eval_every=1"]}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in QUICK_FAMILIES
                                               else [pytest.mark.slow])
                                  for n in sorted(REGISTRY)])
def test_a_divergent_run_of_every_experiment_stops_with_one_line(name, tmp_path, capfd):
    out = tmp_path / "run"
    extra = list(QUICK_FAMILIES.get(name, []))
    if "model" in get_experiment(name).requires:  # a random tiny HF model built here
        pytest.importorskip("transformers")
        pytest.importorskip("peft")
        from factlab.pipelines.popqa import protocol_texts
        from factlab.pipelines.tiny_hf import build_tiny_checkpoint
        from factlab.tasks.popqa import fixture_path, load_popqa

        texts = protocol_texts(load_popqa(fixture_path()))
        extra.append(f"model={build_tiny_checkpoint(tmp_path / 'tiny', texts, arch='llama')}")
        capfd.readouterr()  # the builder's own progress bar is not the run's output
    code = main(["run", name, *_divergent_overrides(name), *extra,
                 "--out", str(out), "--no-progress"])
    err = capfd.readouterr().err
    assert code == 1 and len(_lines(err)) == 1 and "diverged at step" in err, err
    assert f"{float(DIVERGENT_LR.get(name, '1e30')):g}" in err
    assert not (out / "summary.json").exists()
    assert json.loads((out / "failed.json").read_text())["status"] == "failed"


# ------------------------------------------------------------------ one writer per directory


def test_second_writer_is_refused_with_one_line(tmp_path, capfd):
    out = tmp_path / "run"
    holder = RunStore(out)
    holder.acquire()
    try:
        with pytest.raises(RunBusyError):
            run_experiment(TOY, TOY.make_config(), out=out)
        code = main(["run", "capacity-linear", "d=8", "seeds=0", "--out", str(out)])
        err = capfd.readouterr().err
        assert code == 1 and len(_lines(err)) == 1 and "another factlab process" in err
        assert not (out / "metrics.jsonl").exists()  # the holder's files are left alone
    finally:
        holder.release()
    summary = run_experiment(TOY, TOY.make_config(), out=out)
    assert summary["verdict"] == "holds" and summary_ok(out)


def test_config_json_records_the_thread_count_and_inf_as_a_string(tmp_path):
    cfg = TOY.make_config({"train.max_loss": "inf"})
    run_experiment(TOY, cfg, out=tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["meta"]["threads"] == 1 and stored["train"]["max_loss"] == "inf"
    again = TOY.make_config(load_config_file(tmp_path / "run" / "config.json", "toy"))
    assert again == cfg


def test_torn_summary_is_not_done_and_the_sweep_reruns_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FACTLAB_ALLOW_MODULES", "1")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    sweep = plan_sweep("test_reliability:TOY", ["target=1,2"], out=tmp_path / "sw")
    assert run_sweep(sweep, launcher="serial", quiet=True, figure=False).counts == {"done": 2}
    cell = sweep.run_dir(sweep.cells[0])
    (cell / "summary.json").write_text('{"verdict": "ho')  # a full disk mid-write
    assert not summary_ok(cell)
    result = run_sweep(sweep, launcher="serial", quiet=True, figure=False)
    assert result.counts == {"done": 2} and summary_ok(cell)
    assert check_metrics(tmp_path / "sw", ["run_id"]) == ["run_id"]
    with pytest.raises(ConfigError, match="unknown metric 'nope'"):
        check_metrics(tmp_path / "sw", ["nope"])


# ------------------------------------------------------------------------- sweep strictness


def test_sweep_refuses_user_modules_without_the_opt_in(monkeypatch):
    monkeypatch.delenv("FACTLAB_ALLOW_MODULES", raising=False)
    with pytest.raises(ConfigError, match="FACTLAB_ALLOW_MODULES"):
        plan_sweep("os:system")
    monkeypatch.setenv("FACTLAB_ALLOW_MODULES", "1")
    with pytest.raises(ConfigError, match="not a factlab Experiment"):
        plan_sweep("os:sep")


@pytest.mark.parametrize("args, fragment", [
    (["d=[8,11"], "unbalanced brackets"),
    (["d=8]"], "unbalanced or nested"),
    (["d=[[8]]"], "nested"),
    (["d=[8]x"], "brackets must wrap"),
    (["d=0:99999999"], "more than 10000"),
])
def test_sweep_grammar_is_strict(args, fragment):
    with pytest.raises(ConfigError, match=fragment):
        plan_sweep("capacity-linear", args)


def test_sweep_refuses_seed_beside_seeds_and_zero_workers(tmp_path, capfd):
    with pytest.raises(ConfigError, match="--seeds given together"):
        plan_sweep("capacity-linear", ["seed=3"], seeds="0-2")
    code = main(["sweep", "capacity-linear", "d=8", "--workers", "0", "--out",
                 str(tmp_path / "sw")])
    assert code == 2 and "--workers" in capfd.readouterr().err
    assert not (tmp_path / "sw").exists()


# ---------------------------------------------------------------------- one line, exit code


def test_config_of_another_experiment_is_refused(tmp_path, capfd):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"experiment": "recall-sequential", "seeds": [0]}))
    assert main(["run", "capacity-linear", "--config", str(path)]) == 2
    assert "config of experiment 'recall-sequential'" in capfd.readouterr().err


@pytest.mark.parametrize("content, fragment", [
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"? [a, b]\n: 1\n", "cannot parse"),
    (b"1: 2\n", "not a knob name"),
    (b"train: !!python/object:os.system {}\n", "cannot parse"),
])
def test_odd_config_files_are_one_line_errors(tmp_path, capfd, content, fragment):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert main(["run", "capacity-linear", "--config", str(path), "--out",
                 str(tmp_path / "run")]) == 2
    err = capfd.readouterr().err
    assert len(_lines(err)) == 1 and fragment in err and not (tmp_path / "run").exists()


def test_out_naming_a_file_or_an_unwritable_place(tmp_path, capfd):
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["run", "capacity-linear", "d=8", "seeds=0", "--out", str(afile)]) == 2
    assert "is a file" in capfd.readouterr().err
    code = main(["run", "capacity-linear", "d=8", "seeds=0", "--out", "/proc/factlab/x"])
    err = capfd.readouterr().err
    assert code == 1 and len(_lines(err)) == 1 and "Traceback" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_disk_that_fills_during_the_run_is_one_line_and_exit_1(tmp_path, capfd):
    """metrics.jsonl on /dev/full: the kernel answers every write with ENOSPC, as a full disk."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").symlink_to("/dev/full")
    code = main(["run", "capacity-linear", "d=8", "seeds=0", "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 1 and len(_lines(err)) == 1 and "no space left" in err, err
    assert not (out / "summary.json").exists()


def _full_filesystem(path: Path) -> bool:
    """Mount a 256 KiB tmpfs at `path` and fill it; False where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    if mounted:
        with open(path / "filler", "wb") as fh, contextlib.suppress(OSError):
            fh.write(b"\0" * (512 * 1024))  # more than fits: ENOSPC once the disk is full
    return mounted


def test_a_really_full_filesystem_is_one_line_and_exit_1(tmp_path, capfd):
    """A real filesystem with no room (a tiny tmpfs; needs root, as CI has)."""
    disk = tmp_path / "disk"
    if not _full_filesystem(disk):
        pytest.skip("mounting a tmpfs needs root")
    try:
        for out in (disk / "run", disk / "sweep"):
            command = (["run", "capacity-linear", "d=8", "seeds=0"] if out.name == "run" else
                       ["sweep", "capacity-linear", "d=8,11", "seeds=0"])
            code = main([*command, "--out", str(out)])
            err = capfd.readouterr().err
            assert code == 1 and len(_lines(err)) == 1 and "no space left" in err, err
            assert not list(out.rglob("summary.json"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_environment_errors_map_to_exit_1_and_bad_files_to_exit_2(tmp_path):
    code, line = describe(OSError(errno.ENOSPC, "No space left on device", "x/metrics.jsonl"))
    assert code == 1 and "no space left" in line
    code, line = describe(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried "
                                       "to allocate 36000600002500 bytes"))
    assert code == 1 and "32.7 TiB" in line
    from safetensors.torch import load_file

    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(Exception) as err:
        load_file(str(bad))
    assert describe(err.value)[0] == 2
    assert describe(KeyError("x"))[1].endswith("(rerun with --debug for the traceback)")


def test_huge_sizes_are_refused_with_a_memory_estimate():
    with pytest.raises(ConfigError, match="needs about .* GiB"):
        get_experiment("recall-sequential").make_config({"task.n_subjects": "100000000"})


def test_debug_shows_the_traceback_and_a_closed_pipe_does_not():
    with pytest.raises(ConfigError):  # --debug: the exception itself, hence its traceback
        main(["show", "capacity-mlp", "d=-3", "--debug"])
    env = {**os.environ, "FACTLAB_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "factlab.cli", "show", "capacity-mlp"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.read(10)
    proc.stdout.close()  # the reader leaves, as `| head -c 10` does
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err


# ----------------------------------------------------------------- determinism under load

BURN = "import time\nt = time.time()\nwhile time.time() - t < 120: pass\n"
# one run of a small config through run_experiment (imports one experiment, not the CLI's all)
RUN = """
import sys
from factlab.experiments import get_experiment
from factlab.experiments.base import run_experiment
exp = get_experiment("recall-sequential")
cfg = exp.make_config({"seed": "11", "train.steps": "96", "train.eval_every": "8",
                       "n_test": "128"})
run_experiment(exp, cfg, out=sys.argv[1], show_progress=False)
"""


def _run(out: Path) -> subprocess.Popen:
    # the default thread policy: no thread caps from the test environment
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS")}
    return subprocess.Popen([sys.executable, "-c", RUN, str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_metrics_are_identical_alone_and_beside_a_cpu_burner_and_a_twin(tmp_path):
    alone = _run(tmp_path / "alone")
    assert alone.wait() == 0, alone.stderr.read()
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        twins = [_run(tmp_path / f"loaded{i}") for i in range(2)]
        for proc in twins:
            assert proc.wait() == 0, proc.stderr.read()
    finally:
        burner.kill()
        burner.wait()
    reference = (tmp_path / "alone" / "metrics.jsonl").read_bytes()
    assert reference and all((tmp_path / f"loaded{i}" / "metrics.jsonl").read_bytes()
                             == reference for i in range(2))
    meta = json.loads((tmp_path / "alone" / "config.json").read_text())["meta"]
    assert meta["threads"] == 1


def test_write_json_atomic_never_stores_inf_as_a_number(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"a": float("inf"), "b": float("nan"), "c": 1.5})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": "inf", "b": None, "c": 1.5}


def test_thread_policy_takes_the_experiments_count_and_the_override_wins(monkeypatch):
    from factlab.launchers import single_thread_env
    from factlab.runtime import choose_threads

    monkeypatch.delenv("FACTLAB_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert choose_threads(ToyConfig()) == 1  # small config, nothing declared
    assert choose_threads(ToyConfig(), preferred=2) == 2
    assert choose_threads(ToyConfig(), preferred=8) == 2  # capped by the usable cores
    assert get_experiment("induction-standard").threads == 2
    monkeypatch.setenv("FACTLAB_THREADS", "1")  # what sweep and reproduce workers get
    assert choose_threads(ToyConfig(), preferred=2) == 1
    assert single_thread_env()["FACTLAB_THREADS"] == "1"
    monkeypatch.setenv("FACTLAB_THREADS", "two")
    with pytest.raises(ConfigError):
        choose_threads(ToyConfig())


def test_run_refuses_a_bad_thread_count_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FACTLAB_THREADS", raising=False)
    assert main(["run", "capacity-linear", "--threads", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--threads" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
