"""Multi-stage procedures shared by several claims (extraction, IC memories, the PopQA protocol)."""
