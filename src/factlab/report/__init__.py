"""Figures: one style and shared plot functions."""
