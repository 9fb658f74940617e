"""Typed dataclass configs with dotted overrides and one-line validation errors.

A config is a (possibly nested) dataclass. Values arrive as strings from the command line
(``model.d=32``), as JSON/YAML from a file, or as Python values; `apply_overrides` parses each
against the field's annotated type and `validate` checks every value by its type
(`factlab.knobs.check_types`) and then runs every ``check()`` method in the tree. Anything
wrong raises `ConfigError` whose message is one line naming the key.

The type rules (finite floats, bounded positive sizes, non-empty tuples, seed ranges, a memory
estimate) live in `factlab.knobs` and need no code per knob.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from factlab.knobs import (  # re-exported: ConfigError and require are the config API
    SEED_MAX,
    ConfigError,
    allow_inf,
    check_memory,
    check_types,
    field_types,
    require,
)

__all__ = ["ConfigError", "ExperimentConfig", "allow_inf", "apply_overrides", "require",
           "validate"]


@dataclasses.dataclass
class ExperimentConfig:
    """Fields every experiment config has: the seeds, the device and the scale preset.

    `seeds` is the one seed knob: a claim's verdict is computed over every seed in it (three
    at the quick scale). `seed=N` on the command line means `seeds=N` (one seed).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    device: str = "cpu"  # "cpu", "cuda", "cuda:1" or "auto"
    scale: Literal["quick", "paper"] = "quick"

    @property
    def seed(self) -> int:
        """The first seed: what a single-seed stage derives its generators from."""
        return self.seeds[0]

    def check(self) -> None:
        require(len(self.seeds) >= 1, "seeds", "needs at least one seed, e.g. seeds=0,1,2")
        require(all(0 <= s <= SEED_MAX for s in self.seeds), "seeds",
                f"every seed must be in [0, 2^63), got {list(self.seeds)}")
        require(len(set(self.seeds)) == len(self.seeds), "seeds",
                f"seeds must be distinct, got {list(self.seeds)}")
        require(_DEVICE.fullmatch(self.device) is not None, "device",
                f"must be one of auto, cpu, cuda, cuda:N, mps; got {self.device!r}")


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


def _field_types(cls: type) -> dict[str, Any]:
    return field_types(cls)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return f"a comma list of {_type_name(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _parse_scalar(raw: Any, tp: Any, key: str) -> Any:
    """Convert `raw` (a string or a JSON value) into the annotated type `tp`."""
    origin = get_origin(tp)
    bad = ConfigError(f"{key}: expected {_type_name(tp)}, got {raw!r}")
    if tp is type(None):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            return None
        raise bad
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _parse_scalar(raw, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        for option in get_args(tp):
            if raw == option or (isinstance(raw, str) and str(option) == raw):
                return option
        raise bad
    if origin is tuple:
        if isinstance(raw, str):
            text = raw.strip()
            if text[:1] + text[-1:] in ("[]", "()"):
                text = text[1:-1]
            if any(c in text for c in "[]()"):  # half-bracketed or nested: not a guess
                raise ConfigError(f"{key}: expected {_type_name(tp)} such as 1,2 or [1,2], "
                                  f"got {raw!r}")
            items: list[Any] = [t.strip() for t in text.split(",")] if text.strip() else []
            if "" in items:
                raise ConfigError(f"{key}: empty item in {raw!r}")
        elif isinstance(raw, (list, tuple)):
            items = list(raw)
        else:
            items = [raw]
        return tuple(_parse_scalar(item, get_args(tp)[0], key) for item in items)
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off"):
            return False
        raise bad
    if tp is int:
        if isinstance(raw, bool):
            raise bad
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str):
            try:
                value = float(raw) if any(c in raw for c in ".eE") else int(raw)
            except (ValueError, OverflowError):
                raise bad from None
            if isinstance(value, float) and not value.is_integer():
                raise bad
            return int(value)
        raise bad
    if tp is float:
        if isinstance(raw, bool):
            raise bad
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise bad from None
    if tp is str:
        if isinstance(raw, (dict, list)):
            raise bad
        return str(raw)
    raise ConfigError(f"{key}: unsupported field type {tp}")


def _allowed_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += _allowed_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def set_value(cfg: Any, dotted: str, raw: Any) -> Any:
    """Return a copy of `cfg` with the dotted key set to `raw`, parsed to the field's type."""
    head, _, rest = dotted.partition(".")
    names = {f.name for f in dataclasses.fields(cfg)}
    if head not in names:
        raise ConfigError(
            f"unknown key {dotted!r}; allowed keys: {', '.join(_allowed_keys(cfg))}"
        )
    current = getattr(cfg, head)
    if dataclasses.is_dataclass(current):
        if not rest:
            if not isinstance(raw, dict):
                raise ConfigError(f"{head}: is a section; set its keys, e.g. {head}.<key>=...")
            for sub_key, sub_raw in raw.items():
                current = _set_in(current, sub_key, sub_raw, f"{head}.")
            return dataclasses.replace(cfg, **{head: current})
        return dataclasses.replace(cfg, **{head: _set_in(current, rest, raw, f"{head}.")})
    if rest:
        raise ConfigError(f"unknown key {dotted!r}: {head!r} is not a section")
    value = _parse_scalar(raw, _field_types(type(cfg))[head], head)
    return dataclasses.replace(cfg, **{head: value})


def _set_in(section: Any, key: str, raw: Any, prefix: str) -> Any:
    try:
        return set_value(section, key, raw)
    except ConfigError as err:
        message = str(err)
        if message.startswith("unknown key"):
            allowed = ", ".join(prefix + k for k in _allowed_keys(section))
            raise ConfigError(
                f"unknown key {prefix + key!r}; allowed keys: {allowed}"
            ) from None
        raise ConfigError(prefix + message) from None


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """Apply {dotted_key: value} overrides in order and validate the result.

    `seed` is an alias of `seeds` (one seed); giving both is refused as ambiguous.
    """
    if "seed" in overrides:
        if "seeds" in overrides:
            raise ConfigError("seed and seeds given together; use seeds=0,1,2 (seed=N means "
                              "seeds=N)")
        overrides = {("seeds" if k == "seed" else k): v for k, v in overrides.items()}
    for key, raw in overrides.items():
        cfg = set_value(cfg, key, raw)
    validate(cfg)
    return cfg


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every value by its type (the whole tree first, so that a section's `check()` only
    sees well-typed finite values), then run `check()` on every dataclass in the tree (errors
    prefixed with the section path), then refuse sizes whose tensors cannot fit in memory."""
    _check_types_tree(cfg, prefix)
    _check_tree(cfg, prefix)
    if not prefix:
        check_memory(cfg)


def _check_types_tree(cfg: Any, prefix: str) -> None:
    check_types(cfg, prefix)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            _check_types_tree(value, f"{prefix}{f.name}.")


def _check_tree(cfg: Any, prefix: str) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            _check_tree(value, f"{prefix}{f.name}.")
    check = getattr(cfg, "check", None)
    if check is None:
        return
    try:
        check()
    except ConfigError as err:
        raise ConfigError(prefix + str(err)) from None
    except (ValueError, TypeError, ArithmeticError, IndexError) as err:  # a check that crashed
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {err}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are kept as values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def parse_override_args(args: list[str]) -> dict[str, str]:
    """Turn ["a.b=1", "c=x"] into {"a.b": "1", "c": "x"}; refuse anything without '='."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad override {arg!r}: expected key=value, e.g. train.lr=0.01")
        out[key.strip()] = value.strip()
    return out


def load_config_file(path: str | Path, experiment: str | None = None) -> dict[str, Any]:
    """Read a JSON or YAML file of (possibly nested) overrides; one-line errors on failure.

    A stored config.json names its experiment; given `experiment`, a file naming another one
    is refused (its knobs would silently mean something else).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: no such file {str(path)!r}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"--config: cannot read {str(path)!r}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config: {path.name} is not UTF-8 text") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--config: cannot parse {path.name}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path.name} must hold a mapping of keys to values")
    stored = data.pop("experiment", None)  # a stored config.json carries these; not knobs
    if experiment is not None and stored is not None and stored != experiment:
        raise ConfigError(f"--config: {path.name} is a config of experiment {stored!r}, "
                          f"not {experiment!r}")
    data.pop("meta", None)
    _check_keys(data, path.name)
    return flatten(data)


def _check_keys(data: dict[Any, Any], name: str, prefix: str = "") -> None:
    for key, value in data.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise ConfigError(f"--config: {name} has a key that is not a knob name: "
                              f"{prefix}{key!r}")
        if isinstance(value, dict):
            _check_keys(value, name, f"{prefix}{key}.")
