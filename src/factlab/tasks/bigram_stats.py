"""Global character statistics of the trigger task (Birth, arXiv 2306.00802).

`BigramStats` holds the unigram π_u and the row-normalised bigram π_b(·|i) of a character
vocabulary. The tiny-Shakespeare counts ship as package data
(``factlab/data/shakespeare_char_bigrams.json``); `stats_from_text` computes the same from any
text file. Token ids follow the sorted character order. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import torch

from factlab.config import ConfigError

SHIPPED = "shakespeare"


@dataclasses.dataclass(frozen=True)
class BigramStats:
    """Unigram and bigram statistics over a vocabulary of N symbols."""

    vocab: tuple[str, ...]
    unigram_counts: torch.Tensor  # [N] float64
    bigram_counts: torch.Tensor  # [N, N] float64, [i, j] = count of i followed by j

    @property
    def n(self) -> int:
        """Vocabulary size N."""
        return len(self.vocab)

    @property
    def unigram(self) -> torch.Tensor:
        """π_u, [N] (float64)."""
        return self.unigram_counts / self.unigram_counts.sum()

    @property
    def bigram(self) -> torch.Tensor:
        """π_b(j|i), [N, N] (float64). An empty row (a symbol only seen last) is uniform."""
        rows = self.bigram_counts.sum(1, keepdim=True)
        uniform = torch.full_like(self.bigram_counts, 1.0 / self.n)
        return torch.where(rows > 0, self.bigram_counts / rows.clamp_min(1), uniform)

    def unigram_entropy(self) -> float:
        """H(π_u) in nats."""
        p = self.unigram
        return float(-(p * p.clamp_min(1e-300).log()).sum())

    def conditional_entropy(self) -> float:
        """Σ_i π_u(i) H(π_b(·|i)) in nats (2.45 for tiny Shakespeare)."""
        pb = self.bigram
        rows = -(pb * pb.clamp_min(1e-300).log()).sum(1)
        return float((self.unigram * rows).sum())

    def top_tokens(self, k: int, offset: int = 0) -> torch.Tensor:
        """Ids of the k most frequent symbols, skipping the `offset` most frequent, [k]."""
        order = torch.argsort(self.unigram_counts, descending=True, stable=True)
        return order[offset:offset + k]

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Symbols of `ids` joined into a string."""
        return "".join(self.vocab[int(i)] for i in ids)


def _from_counts(vocab: list, uni: list, bi: list, source: str) -> BigramStats:
    """Validate raw lists into a `BigramStats` (ConfigError naming `source` on failure)."""
    n = len(vocab)
    try:
        u = torch.tensor(uni, dtype=torch.float64)
        b = torch.tensor(bi, dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bigram stats {source}: counts are not numeric ({err})") from None
    if n < 2 or u.shape != (n,) or b.shape != (n, n):
        raise ConfigError(f"bigram stats {source}: expected a vocab of N >= 2 symbols, "
                          f"unigram_counts [N] and bigram_counts [N, N]; got N={n}, "
                          f"{tuple(u.shape)}, {tuple(b.shape)}")
    if (u < 0).any() or (b < 0).any() or u.sum() <= 0 or b.sum() <= 0:
        raise ConfigError(f"bigram stats {source}: counts must be >= 0 and not all zero")
    return BigramStats(tuple(str(v) for v in vocab), u, b)


def load_stats(path: str | Path | None = None) -> BigramStats:
    """Load a counts JSON (keys vocab, unigram_counts, bigram_counts); None: the shipped file.

    A path not ending in .json is read as plain text and counted (see `stats_from_text`).
    """
    if path is None or str(path) == SHIPPED:
        text = resources.files("factlab").joinpath("data/shakespeare_char_bigrams.json")
        data = json.loads(text.read_text())
        return _from_counts(data["vocab"], data["unigram_counts"], data["bigram_counts"],
                            "shakespeare_char_bigrams.json")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"bigram stats: no such file {str(path)!r}")
    if path.suffix.lower() != ".json":
        return stats_from_text(path)
    try:
        data = json.loads(path.read_text())
        return _from_counts(data["vocab"], data["unigram_counts"], data["bigram_counts"],
                            path.name)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"bigram stats {path.name}: not valid JSON ({err})") from None
    except (KeyError, TypeError):
        raise ConfigError(f"bigram stats {path.name}: needs keys vocab, unigram_counts, "
                          "bigram_counts") from None


def stats_from_text(path: str | Path) -> BigramStats:
    """Character unigram and bigram counts of a UTF-8 text file (vocab = sorted characters)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"bigram stats: no such file {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"bigram stats {path.name}: not a UTF-8 text file") from None
    vocab = sorted(set(text))
    if len(vocab) < 2 or len(text) < 2:
        raise ConfigError(f"bigram stats {path.name}: needs at least two distinct characters")
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = len(vocab)
    uni = torch.bincount(ids, minlength=n).double()
    bi = torch.bincount(ids[:-1] * n + ids[1:], minlength=n * n).double().view(n, n)
    return BigramStats(tuple(vocab), uni, bi)
