"""The run directory: config, metrics, summary, figures and checkpoints."""
