"""Tiny random HF checkpoints (GPT-2 or Llama) with a word-level tokenizer, built offline.

Tests and smoke runs use these instead of downloaded weights: the tokenizer's vocabulary is
every word and punctuation mark of the given texts, so a PopQA-format file can be tokenised
without unknown tokens, and the model is randomly initialised from a seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch

from factlab.pipelines.popqa import protocol_texts
from factlab.tasks.popqa import fixture_path, load_popqa

SPECIALS = ("<|endoftext|>", "<unk>")


def build_word_tokenizer(texts: Iterable[str]):
    """A `PreTrainedTokenizerFast` over the words and punctuation of `texts` (no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    words = sorted({w for t in texts for w, _ in pre.pre_tokenize_str(t)})
    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS[0],
                                   eos_token=SPECIALS[0], pad_token=SPECIALS[0],
                                   unk_token=SPECIALS[1])


def build_tiny_checkpoint(path: str | Path, texts: Iterable[str],
                          arch: Literal["gpt2", "llama"] = "gpt2", d_model: int = 32,
                          n_layers: int = 2, n_heads: int = 2, n_ctx: int = 512,
                          seed: int = 0) -> Path:
    """Write a randomly initialised tiny causal LM and its word tokenizer to `path`."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    path = Path(path)
    tokenizer = build_word_tokenizer(texts)
    vocab = len(tokenizer)
    eos = tokenizer.eos_token_id
    if arch == "gpt2":
        config = GPT2Config(n_layer=n_layers, n_head=n_heads, n_embd=d_model, vocab_size=vocab,
                            n_positions=n_ctx, bos_token_id=eos, eos_token_id=eos)
    else:
        config = LlamaConfig(num_hidden_layers=n_layers, hidden_size=d_model,
                             intermediate_size=4 * d_model, num_attention_heads=n_heads,
                             num_key_value_heads=max(1, n_heads // 2), vocab_size=vocab,
                             max_position_embeddings=n_ctx, bos_token_id=eos,
                             eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m factlab.pipelines.tiny_hf OUT [gpt2|llama] [DATA]``: a tiny checkpoint."""
    import sys


    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print(main.__doc__)
        return 2
    arch = args[1] if len(args) > 1 else "gpt2"
    if arch not in ("gpt2", "llama"):
        print(f"arch must be gpt2 or llama, got {arch!r}")
        return 2
    if len(args) > 2:
        rows = load_popqa(args[2])
    else:

        rows = load_popqa(fixture_path())
    path = build_tiny_checkpoint(args[0], protocol_texts(rows), arch=arch,
                                 n_heads=2 if arch == "gpt2" else 4)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
