"""Configs: dotted overrides, typed parsing, one-line errors, files, and the CLI's exit codes."""

import json
import subprocess
import sys

import pytest

from factlab.cli import main
from factlab.config import ConfigError, apply_overrides, load_config_file, to_dict
from factlab.experiments import get_experiment
from factlab.experiments.capacity import CapacityConfig
from factlab.experiments.tradeoff import TradeoffConfig


def test_dotted_overrides_parse_to_field_types():
    cfg = apply_overrides(TradeoffConfig(), {"model.d_model": "32", "train.lr": "3e-3",
                                             "heads": "1,2,4", "task.eos": "false",
                                             "train.optimizer": "sgd", "seed": 7})
    assert cfg.model.d_model == 32 and cfg.train.lr == pytest.approx(3e-3)
    assert cfg.heads == (1, 2, 4) and cfg.task.eos is False
    assert cfg.train.optimizer == "sgd" and cfg.seed == 7


@pytest.mark.parametrize("overrides, fragment", [
    ({"model.bogus": "1"}, "unknown key 'model.bogus'"),
    ({"bogus": "1"}, "unknown key 'bogus'"),
    ({"train.lr": "fast"}, "train.lr: expected float"),
    ({"train.optimizer": "lion"}, "train.optimizer: expected one of"),
    ({"train.steps": "0"}, "train.steps: must be >= 1"),
    ({"model.d_model": "0"}, "model.d_model: must be >= 1"),
    ({"heads": "1,x"}, "heads: expected"),
    ({"model": "3"}, "model: is a section"),
])
def test_bad_overrides_name_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides(TradeoffConfig(), overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_impossible_capacity_width_is_refused():
    with pytest.raises(ConfigError, match="d: must be >= 1, got -3"):
        apply_overrides(CapacityConfig(), {"d": "-3"})


def test_scale_paper_preset_then_user_overrides():
    exp = get_experiment("capacity-mlp")
    cfg = exp.make_config({"scale": "paper", "train.lr": "0.5"})
    assert cfg.width_ratio == (1.0, 2.0, 4.0, 8.0) and cfg.train.lr == 0.5
    assert exp.make_config({}).d == (8, 11, 16, 22, 32)


def test_config_files_json_and_yaml(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"train": {"lr": 0.2}, "seeds": [3, 4]}))
    (tmp_path / "c.yaml").write_text("train:\n  steps: 77\nd: [8, 16]\n")
    cfg = apply_overrides(CapacityConfig(), load_config_file(tmp_path / "c.json"))
    assert cfg.train.lr == 0.2 and cfg.seeds == (3, 4)
    cfg = apply_overrides(CapacityConfig(), load_config_file(tmp_path / "c.yaml"))
    assert cfg.train.steps == 77 and cfg.d == (8, 16)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config_file(tmp_path / "bad.json")


def test_stored_config_round_trips(tmp_path):
    cfg = apply_overrides(TradeoffConfig(), {"heads": "2,3", "train.lr": "0.02"})
    (tmp_path / "config.json").write_text(json.dumps({"experiment": "x", **to_dict(cfg),
                                                      "meta": {"git_sha": None}}))
    again = apply_overrides(TradeoffConfig(), load_config_file(tmp_path / "config.json"))
    assert again == cfg


@pytest.mark.parametrize("argv", [
    ["run", "capacity-mlp", "d=-3"],
    ["run", "nope"],
    ["run", "capacity-mlp", "model.bogus=1"],
    ["run", "capacity-mlp", "train.lr"],
    ["run", "capacity-mlp", "--config", "/no/such/file.json"],
    ["report", "/no/such/dir"],
    ["frobnicate"],
])
def test_cli_bad_input_exits_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("factlab: error:") and "\n" not in err and "Traceback" not in err


def test_console_script_exit_code():
    out = subprocess.run([sys.executable, "-m", "factlab.cli", "run", "capacity-mlp", "d=-3"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "d: must be >= 1, got -3" in out.stderr


def test_list_names_every_experiment_with_its_claim(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("capacity-linear", "capacity-mlp", "recall-tradeoff", "recall-sequential"):
        assert name in out
