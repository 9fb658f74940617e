"""Analysis of measured numbers: statistics, monotone searches, fits, nulls and seed aggregation."""
