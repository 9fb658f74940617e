"""factlab: a laboratory for how transformers store, extract and recall facts."""

from factlab.version import __version__

__all__ = ["__version__"]
