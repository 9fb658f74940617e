"""factlab: a laboratory for how transformers store, extract and recall facts."""

__version__ = "0.1.0"
