"""Run directories, launchers and sweeps."""
