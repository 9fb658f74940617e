"""The HuggingFace path: local causal LMs, PopQA and the extraction protocol on real models.

Importing this package is cheap: `transformers` and `peft` are imported inside the functions
that need them (install them with ``pip install factlab[hf]``).
"""
