"""Training: the one loop, the stacked-seed ensemble, and shared recipes."""
