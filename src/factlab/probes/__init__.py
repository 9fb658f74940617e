"""Metrics and mechanistic probes. A probe is a function of (model outputs, batch) -> floats."""
