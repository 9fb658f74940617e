"""The command line a new user meets: help, list, show, did-you-mean, pipes, reruns, report."""

from __future__ import annotations

import subprocess
import sys

import pytest

from factlab.cli import main
from factlab.cli_text import field_docs, format_list, knob_rows
from factlab.experiments import REGISTRY, get_experiment

TINY = ["d=6", "seeds=0", "train.steps=50", "tolerance=1.5"]  # capacity-linear in seconds


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_help_lists_experiments_and_examples(capsys):
    for argv in ((), ("run",)):
        text = _help(capsys, *argv)
        assert all(name in text.replace("-\n  ", "-") for name in REGISTRY), argv
        assert "examples:" in text and "factlab reproduce --scale quick" in text
    assert "--force" in _help(capsys, "run") and "--only" in _help(capsys, "reproduce")


def test_list_fits_100_columns(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(REGISTRY) and max(map(len, lines)) <= 100
    assert main(["list", "--full"]) == 0
    full = capsys.readouterr().out
    assert max(map(len, full.splitlines())) <= 100 and len(full.splitlines()) > len(lines)


def test_format_list_cuts_and_wraps():
    class E:
        name, claim = "x", "word " * 40

    assert format_list([E()], width=30)[0].endswith("…") and len(format_list([E()], 30)[0]) == 30
    assert all(len(line) <= 30 for line in format_list([E()], width=30, full=True))


def test_show_prints_type_default_meaning_and_verdict_knobs(capsys):
    assert main(["show", "capacity-linear"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if " threshold " in x)
    assert line.startswith("*") and "float" in line and "0.99" in line and "stored" in line
    lr = next(x for x in out.splitlines() if x[2:].startswith("train.lr "))
    assert lr.startswith(" ") and "learning rate" in lr
    assert "the verdict depends on this knob" in out
    assert main(["show", "capacity-linear", "--json"]) == 0
    assert capsys.readouterr().out.lstrip().startswith("{")


def test_field_docs_read_comments_and_declared_verdict_keys():
    exp = get_experiment("capacity-linear")
    docs = field_docs(exp.config)
    assert docs["threshold"] == 'accuracy that counts as "stored"'
    assert "device" in docs  # inherited from ExperimentConfig
    rows = {r[0]: r for r in knob_rows(exp.config(), verdict_keys=("d",))}
    assert "seeds the verdict" in rows["seeds"][3]  # a generic meaning where none is written
    assert rows["d"][4] and not rows["threshold"][4]  # declared keys replace the guess


def test_did_you_mean(capsys):
    assert main(["run", "capacity-linaer"]) == 2
    assert "did you mean capacity-linear" in capsys.readouterr().err
    assert main(["show", "capacity-linear", "treshold=0.9"]) == 2
    assert "did you mean threshold" in capsys.readouterr().err
    assert main(["run", "capacity-linear", "train.lrr=1"]) == 2
    assert "did you mean train.lr" in capsys.readouterr().err
    assert main(["reproduce", "--only", "indcution-head", "--out", "x"]) == 2
    assert "did you mean induction-head" in capsys.readouterr().err


def test_no_traceback_on_a_closed_pipe():
    proc = subprocess.Popen([sys.executable, "-m", "factlab", "show", "capacity-linear"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything was written (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_run_refuses_a_finished_run_dir_unless_forced(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["run", "capacity-linear", *TINY, "--out", out, "--no-progress"]) == 0
    first = capsys.readouterr().out
    stamp = (tmp_path / "run" / "summary.json").stat().st_mtime_ns
    assert main(["run", "capacity-linear", *TINY, "--out", out]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "run" / "summary.json").stat().st_mtime_ns == stamp
    assert main(["run", "capacity-linear", *TINY, "--out", out, "--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "nothing run" in resumed and first.splitlines()[-1] == resumed.splitlines()[-1]
    assert main(["run", "capacity-linear", *TINY, "--out", out, "--force", "--no-progress"]) == 0
    assert (tmp_path / "run" / "summary.json").stat().st_mtime_ns != stamp
    assert main(["report", out]) == 0
    text = capsys.readouterr().out
    assert "report:" in text and (tmp_path / "run" / "report.html").is_file()


def test_report_refuses_a_folder_without_runs(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no run directory" in capsys.readouterr().err
