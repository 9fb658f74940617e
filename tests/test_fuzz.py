"""Fuzz: generated bad values for every knob of every registered experiment.

Each probe goes through the command line (`factlab show NAME key=value`, which validates and
writes nothing; a few through `factlab run`) and must end with exit code 2, exactly one line on
stderr, no traceback, and no file written. The bad values follow from the knob's type alone
(docs/reliability.md): wrong type, NaN, infinity where the field does not allow it, negative,
huge, empty, and a half-bracketed list, so a new knob is fuzzed without new test code.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Literal, get_args, get_origin

import pytest

from factlab.cli import main
from factlab.config import ConfigError
from factlab.errors import describe
from factlab.experiments import REGISTRY, get_experiment

HUGE = "99999999999999999999"  # > 2^63: beyond every int bound, seeds included


def _leaves(cfg: Any, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field, Any]]:
    """(dotted key, annotation, field, the section class's default) of every knob."""
    hints = typing.get_type_hints(type(cfg))
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += _leaves(value, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            out.append((prefix + f.name, hints[f.name], f, default, type(cfg)))
    return out


def _scalar_bad(tp: Any, f: dataclasses.Field) -> list[str]:
    if get_origin(tp) is Literal:
        return ["no-such-option", "1.5"]
    if tp is bool:
        return ["maybe", "2"]
    if tp is int:
        return ["abc", "1.5", "-3", HUGE, "nan"]
    if tp is float:
        bad = ["nan", "abc", "-inf", "-1", "1e400x"]
        return bad if f.metadata.get("inf") else [*bad, "inf", "1e400"]
    return []


def bad_values(key: str, tp: Any, f: dataclasses.Field, default: Any) -> list[str]:
    """Values the type rules refuse for this knob."""
    if key.endswith("device"):
        return ["gpu0", "cuda:x", ""]
    if get_origin(tp) is tuple:
        (elem,) = [a for a in get_args(tp) if a is not Ellipsis]
        out = [f"1,{v}" if elem is not str else v for v in _scalar_bad(elem, f)]
        out += ["[1,2", "1]"]
        if default != ():
            out.append("")
        return out
    return _scalar_bad(tp, f)


def _probes() -> list[tuple[str, str, str]]:
    """(experiment, key, bad value); a knob of a section class shared by several experiments
    (TrainConfig, say) is probed in full in the first and with one value in the others."""
    probes, seen = [], set()
    for name in sorted(REGISTRY):
        cfg = get_experiment(name).make_config()
        for key, tp, f, default, owner in _leaves(cfg):
            values = bad_values(key, tp, f, default)
            if (owner, f.name) in seen:
                values = values[:1]
            seen.add((owner, f.name))
            probes += [(name, key, v) for v in values]
        probes.append((name, "no_such_knob", "1"))
    return probes


def test_every_registered_experiment_has_fuzzed_knobs():
    names = {name for name, _, _ in _probes()}
    assert names == set(REGISTRY)


def test_bad_values_for_every_knob_are_refused_in_one_line_with_exit_2():
    # the command line's validation path without argparse (which costs more than the check)
    probes = _probes()
    assert len(probes) > 1000
    failures = []
    for name, key, value in probes:
        try:
            get_experiment(name).make_config({key: value})
        except ConfigError as err:
            code, line = describe(err)
            if code != 2 or "\n" in line or key.split(".")[0] not in line:
                failures.append(f"{name} {key}={value!r}: exit {code}, {line!r}")
        else:
            failures.append(f"{name} {key}={value!r}: accepted")
    assert not failures, f"{len(failures)} of {len(probes)} probes:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_show_with_bad_values_exits_2_with_one_line_and_writes_nothing(name, tmp_path, capfd,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = {v: k for _, k, v in _probes() if _ == name}  # one knob per distinct bad value
    for value, key in values.items():
        code = main(["show", name, f"{key}={value}"])
        err = capfd.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("factlab: error:"), \
            (key, value, err)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_run_with_a_bad_value_writes_nothing(name, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for override in ("train.lr=nan", "seeds=", f"seed={HUGE}", "device=cuda:x"):
        code = main(["run", name, override, "--out", str(tmp_path / "run")])
        err = capfd.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, (override, err)
    assert os.listdir(tmp_path) == []
