"""factlab: a laboratory for how transformers store, extract and recall facts.

`factlab.run`, `factlab.load_runs`, `factlab.load_metrics` and `factlab.Summary` (see
`factlab.api`) are loaded on first use, so `import factlab` imports neither torch nor pandas.
"""

import importlib
from typing import Any

from factlab.version import __version__

__all__ = ["Summary", "__version__", "load_metrics", "load_runs", "run"]
_API = ("Summary", "load_metrics", "load_runs", "run")


def __getattr__(name: str) -> Any:
    """Load the API on first use (PEP 562)."""
    if name in _API:
        return getattr(importlib.import_module("factlab.api"), name)
    raise AttributeError(f"module 'factlab' has no attribute {name!r}")
