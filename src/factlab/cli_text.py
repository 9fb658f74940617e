"""What the command line prints for a new user: help epilogs, `list`, `show`, did-you-mean.

Kept apart from cli.py so the parser stays short and these stay testable. `show` reads each
knob's one-line meaning from its config dataclass: the comment after the field
(`lr: float = 0.1  # learning rate`), else a docstring line right under it, else a generic
meaning for common names. Knobs the verdict depends on are marked: the ones an experiment
declares in `Experiment.verdict_keys`, else those whose name or meaning says so (a threshold, a
target, a tolerance, the seeds).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import textwrap
import types
import typing
from typing import Any

from factlab.config import ConfigError
from factlab.experiments import REGISTRY

EXAMPLES = """\
examples:
  factlab list                                   every claim, one line each
  factlab show capacity-linear                   its knobs: type, default, meaning
  factlab run capacity-linear d=8,11,16          run one claim over 3 seeds
  factlab run induction-head train.steps=300 --out runs/ih
  factlab sweep capacity-linear "d=[8,11,16]" tolerance=1.1,1.3 --seeds 0-2
  factlab reproduce --scale quick --out runs/reproduce   every claim, then report.html
  factlab report runs/reproduce                  rebuild report.html from stored files
"""

GENERIC = {
    "seeds": "seeds the verdict is computed over (seed=N means one seed)",
    "device": "cpu, cuda, cuda:N, mps or auto", "scale": "preset: quick (CPU minutes) or paper",
    "lr": "learning rate", "steps": "optimizer steps", "batch_size": "examples per step",
    "optimizer": "optimizer", "eval_every": "evaluate every this many steps",
    "weight_decay": "weight decay", "schedule": "learning-rate schedule",
    "decay_gamma": "step schedule: factor per decay", "monitor_mode": "min or max of monitor",
}
_VERDICT_NAMES = re.compile(r"threshold|toleran|quorum|margin|^seeds$|_min$|_max$|^min_acc|"
                            r"^max_acc|alpha$", re.I)
_VERDICT_DOCS = re.compile(r"verdict|counts as|the rule|claim", re.I)
_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^=#]+(?:=[^#]*)?(?:#\s*(.*))?$")


def type_name(tp: Any) -> str:
    """A short readable name of a field's annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin is tuple:
        return f"tuple[{type_name(args[0])}]" if args else "tuple"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def suggest(word: str, options: list[str]) -> str:
    """'; did you mean X?' for the closest of `options`, or ''."""
    near = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(near)}?" if near else ""


def experiment_names() -> list[str]:
    """Every registered experiment, sorted (no experiment module is imported)."""
    return sorted(REGISTRY)


def check_name(name: str) -> None:
    """A `ConfigError` with the closest names when `name` is not an experiment."""
    if name not in REGISTRY and ":" not in name:
        raise ConfigError(f"unknown experiment {name!r}{suggest(name, experiment_names())} "
                          "(`factlab list` shows all)")


def all_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted knob of a config dataclass."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        keys += (all_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value)
                 else [prefix + f.name])
    return keys


def check_keys(cfg: Any, keys: list[str]) -> None:
    """A `ConfigError` with the closest knob when a key is not one (`seed` is an alias)."""
    known = all_keys(cfg)
    sections = {k.rsplit(".", 1)[0] for k in known if "." in k}
    for key in keys:
        if key not in known and key != "seed" and key not in sections:
            raise ConfigError(f"unknown key {key!r}{suggest(key, known)} "
                              "(`factlab show NAME` lists the knobs)")


def field_docs(cls: type) -> dict[str, str]:
    """field name -> its one-line meaning from the source of `cls` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        for i, line in enumerate(lines):
            match = _FIELD.match(line)
            if not match or match[1] in ("def", "return"):
                continue
            doc = (match[2] or "").strip()
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if not doc and nxt.startswith(('"""', "'''")):
                doc = nxt.strip("\"' ")
            if doc:
                docs[match[1]] = doc
        for f in dataclasses.fields(klass):
            if f.metadata.get("doc"):
                docs[f.name] = str(f.metadata["doc"])
    return docs


def knob_rows(cfg: Any, verdict_keys: tuple[str, ...] = (),
              prefix: str = "") -> list[tuple[str, str, str, str, bool]]:
    """(key, type, default, meaning, verdict depends on it) for every knob of `cfg`."""
    hints = typing.get_type_hints(type(cfg))
    docs = field_docs(type(cfg))
    rows = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            rows += knob_rows(value, verdict_keys, f"{key}.")
            continue
        doc = docs.get(f.name) or GENERIC.get(f.name, "")
        shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        flagged = key in verdict_keys if verdict_keys else bool(
            _VERDICT_NAMES.search(f.name) or _VERDICT_DOCS.search(doc))
        rows.append((key, type_name(hints.get(f.name, type(value))), shown or "()", doc,
                     flagged))
    return rows


def format_show(exp: Any, cfg: Any, width: int = 100) -> str:
    """The text of `factlab show NAME`: the claim, then one line per knob."""
    rows = knob_rows(cfg, tuple(getattr(exp, "verdict_keys", ()) or ()))
    kw = max(len(r[0]) for r in rows) + 2
    tw = min(max(len(r[1]) for r in rows), 22)
    dw = min(max(len(r[2]) for r in rows), 18)
    out = [f"{exp.name}: {exp.claim}", "",
           f"  {'knob':{kw}s}{'type':{tw}s}  {'default':{dw}s}  meaning"]
    for key, tp, default, doc, flagged in rows:
        tp = tp if len(tp) <= tw else tp[: tw - 1] + "…"
        default = default if len(default) <= dw else default[: dw - 1] + "…"
        line = f"{'*' if flagged else ' '} {key:{kw}s}{tp:{tw}s}  {default:{dw}s}  {doc}"
        out.append(line if len(line) <= width else line[: width - 1] + "…")
    declared = "declared by the experiment" if getattr(exp, "verdict_keys", ()) else \
        "guessed from the knob's name or meaning"
    out += ["", f"* the verdict depends on this knob ({declared}).",
            f"Set any knob with key=value: factlab run {exp.name} "
            f"{rows[0][0]}={rows[0][2]} --out DIR"]
    return "\n".join(out)


def format_list(experiments: list[Any], width: int = 100, full: bool = False) -> list[str]:
    """One line per experiment: name and claim, cut to `width` columns unless `full`."""
    name_w = max(len(e.name) for e in experiments) + 2
    lines = []
    for exp in experiments:
        if full:
            body = textwrap.wrap(exp.claim, width - name_w) or [""]
            lines.append(f"{exp.name:{name_w}s}{body[0]}")
            lines += [" " * name_w + b for b in body[1:]]
            continue
        line = f"{exp.name:{name_w}s}{exp.claim}"
        lines.append(line if len(line) <= width else line[: width - 1] + "…")
    return lines


def run_epilog() -> str:
    """The epilog of `factlab run --help`: the experiments and examples."""
    names = textwrap.fill(", ".join(experiment_names()), 98, initial_indent="  ",
                          subsequent_indent="  ")
    return f"experiments:\n{names}\n\n{EXAMPLES}"
