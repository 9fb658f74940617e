"""Models: associative memories, the one-layer recall transformer and its relatives."""
