"""What a failure looks like to a user: one line and a documented exit code (docs/reliability.md).

    0    the command did what it was asked (a verdict of any state is a success)
    1    a run started and failed (divergence, out of memory, a failed cell of a sweep) or the
         environment did (permissions, a full disk, a file where factlab needs a folder, a run
         directory another process is writing, an internal error)
    2    bad input, refused before anything runs: an unknown experiment, key or option, an
         ill-typed, non-finite, negative or too large value (the memory estimate included), an
         unreadable or malformed config, data, checkpoint or run file, `--out` naming a file
    130  interrupted (Ctrl-C)

`describe(err)` maps an exception to (code, line); `factlab --debug ...` shows the traceback
instead. `failure_line(err, cfg)` is what a run directory's failed.json records; for a
divergence it names the config key that holds the learning rate to lower.
"""

from __future__ import annotations

import errno
import json
import re
from typing import Any

from factlab.config import ConfigError, flatten, to_dict
from factlab.knobs import memory_limit
from factlab.train.loop import DivergenceError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

# errors raised by readers of files the user handed us: their content is bad input
_BAD_FILE_TYPES = ("SafetensorError", "HeaderTooLarge", "JSONDecodeError", "UnicodeDecodeError",
                   "YAMLError", "ParserError", "ScannerError", "ArrowInvalid", "EmptyDataError")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def lr_knobs(cfg: Any, lr: float) -> list[str]:
    """The dotted config keys whose value is (or lists) the learning rate `lr`."""
    keys = []
    for key, value in flatten(to_dict(cfg)).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and v == lr for v in values):
            keys.append(key)
    named = [k for k in keys if "lr" in k.rsplit(".", 1)[-1]]
    return named or keys


_REMOTE_DIVERGENCE = re.compile(r"DivergenceError: (training diverged at step (\d+) \((.*)\); "
                                r"lower the learning rate \(lr=([^)]+)\))")


def failure_line(err: BaseException, cfg: Any = None) -> str:
    """The one line that describes why a run stopped (for failed.json and stderr).

    A divergence, also one reported by a worker process (a cell of a launcher), names the
    config key(s) that hold the learning rate to lower.
    """
    step, what, lr = getattr(err, "step", None), getattr(err, "what", ""), getattr(err, "lr", None)
    remote = None if isinstance(err, DivergenceError) else _REMOTE_DIVERGENCE.search(str(err))
    if remote is not None:  # a worker's divergence: say so, and where it happened
        where = str(err)[: remote.start()].split(": worker failed")[0].rstrip(": ")
        step, what = int(remote[2]), f"{remote[3]}; in {where}" if where else remote[3]
        lr = float(remote[4]) if _is_float(remote[4]) else None
        err.args = (f"training diverged at step {step} ({what}); lower the learning rate "
                    f"(lr={remote[4]})",)
        err.factlab_divergence = True  # type: ignore[attr-defined]
    if (remote is not None or isinstance(err, DivergenceError)) and cfg is not None and lr:
        knobs = lr_knobs(cfg, lr)
        if knobs:
            err.args = (f"training diverged at step {step} ({what}); lower "
                        f"{' or '.join(knobs)} (now {lr:g})",)
    return describe(err)[1].removeprefix("factlab: ")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def describe(err: BaseException) -> tuple[int, str]:
    """(exit code, one line for stderr) for an exception that reached the command line."""
    name = type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "factlab: interrupted"
    if isinstance(err, ConfigError):
        return EXIT_BAD_INPUT, f"factlab: error: {_first_line(err)}"
    if isinstance(err, DivergenceError) or getattr(err, "factlab_divergence", False):
        return EXIT_FAILED, f"factlab: {_first_line(err)}"
    if name == "RunBusyError":
        return EXIT_FAILED, f"factlab: error: {_first_line(err)}"
    if isinstance(err, MemoryError) or name == "OutOfMemoryError" or (
            isinstance(err, RuntimeError) and "can't allocate memory" in str(err)):
        asked = re.search(r"allocate (\d+) bytes", str(err))
        size = f" (one tensor of {_bytes(int(asked[1]))})" if asked else ""
        return EXIT_FAILED, (f"factlab: error: out of memory{size}; this machine has "
                             f"{_bytes(memory_limit())}; lower the sizes of the config")
    if isinstance(err, OSError):
        return EXIT_FAILED, f"factlab: error: {_os_line(err)}"
    if name in _BAD_FILE_TYPES or isinstance(err, (json.JSONDecodeError, UnicodeDecodeError)):
        return EXIT_BAD_INPUT, f"factlab: error: unreadable input ({name}: {_first_line(err)})"
    return EXIT_FAILED, (f"factlab: error: internal error {name}: {_first_line(err)[:200]} "
                         "(rerun with --debug for the traceback)")


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def _os_line(err: OSError) -> str:
    where = f" {str(err.filename)!r}" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"no space left on the device writing{where}; free space or choose another --out"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied on{where}; choose a writable --out"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"a file stands where a folder should be:{where}"
    return f"{err.strerror or _first_line(err)}{':' + where if where else ''}"
