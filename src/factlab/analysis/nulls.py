"""Order-free baselines of the trigger task, computed on the batch a verdict reads.

An induction head uses order: the token that followed earlier occurrences of the current
token. A predictor that sees only the prefix's token counts can still beat 1/K, because the
output o of a repeated trigger q occurs about as often as q itself. These nulls say how far
counts alone go at the in-context (outs >= 2) positions of the same batch:

over_represented  argmax_{j != x_t} n_j(t) - (t + 1) π_u(j): the token most in excess of its
                  unigram expectation in z_0..z_t.
count_match       the token j != x_t whose count n_j(t) is closest to n_{x_t}(t) - 1 (the number
                  of earlier occurrences of x_t, each followed by its output); ties go to the
                  larger excess.
shuffled_prefix   the trained model itself, queried at t after z_0..z_{t-1} are permuted (the
                  counts kept, every adjacent pair broken; x_t stays last).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Model = Callable[[torch.Tensor], torch.Tensor]  # tokens [B, T] -> logits [B, T, N]


def prefix_counts(x: torch.Tensor, n_vocab: int) -> torch.Tensor:
    """counts [B, T, N]: occurrences of each token in x[:, :t+1] (inclusive)."""
    return torch.nn.functional.one_hot(x, n_vocab).cumsum(1).float()


def excess_counts(x: torch.Tensor, unigram: torch.Tensor) -> torch.Tensor:
    """[B, T, N]: n_j(t) - (t + 1) π_u(j)."""
    counts = prefix_counts(x, len(unigram))
    t = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=torch.float32)[None, :, None]
    return counts - t * unigram.float().to(x.device)


def over_represented(x: torch.Tensor, unigram: torch.Tensor) -> torch.Tensor:
    """Predictions [B, T]: the most over-represented token other than the current one."""
    ex = excess_counts(x, unigram)
    ex.scatter_(2, x[..., None], float("-inf"))
    return ex.argmax(-1)


def count_match(x: torch.Tensor, unigram: torch.Tensor) -> torch.Tensor:
    """Predictions [B, T]: the token whose count best matches the current token's count - 1."""
    counts = prefix_counts(x, len(unigram))
    ex = excess_counts(x, unigram)
    own = counts.gather(2, x[..., None])  # n_{x_t}(t), [B, T, 1]
    # distance first, excess as a tie-break (excess is < T, so scale the distance past it)
    score = -(counts - (own - 1)).abs() * (4 * x.shape[1]) + ex
    score.scatter_(2, x[..., None], float("-inf"))
    return score.argmax(-1)


@torch.no_grad()
def shuffled_prefix_correct(model: Model, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                            gen: torch.Generator, start: int = 2) -> torch.Tensor:
    """[B, T] bool (False off `mask`): model(x') argmax = y_t, x' = shuffled z_<t then x_t.

    One forward per query position t >= start with any masked row (rows of that t batched).
    """
    B, T = x.shape
    correct = torch.zeros(B, T, dtype=torch.bool, device=x.device)
    for t in range(start, T):
        rows = torch.nonzero(mask[:, t]).flatten()
        if len(rows) == 0:
            continue
        perm = torch.rand(len(rows), t, generator=gen).argsort(1).to(x.device)
        prefix = x[rows, :t].gather(1, perm)
        tokens = torch.cat([prefix, x[rows, t:t + 1]], 1)
        pred = model(tokens)[:, -1].argmax(-1)
        correct[rows, t] = pred == y[rows, t]
    return correct


def order_free_accuracies(x: torch.Tensor, y: torch.Tensor, outs: torch.Tensor,
                          unigram: torch.Tensor, model: Model | None = None,
                          gen: torch.Generator | None = None) -> dict[str, float]:
    """Accuracy of each order-free null at outs >= 2, and `best` (their maximum)."""
    mask = outs >= 2
    if not bool(mask.any()):
        return {"over_represented": -1.0, "count_match": -1.0, "best": -1.0}
    out = {
        "over_represented": float((over_represented(x, unigram) == y)[mask].float().mean()),
        "count_match": float((count_match(x, unigram) == y)[mask].float().mean()),
    }
    if model is not None:
        gen = gen if gen is not None else torch.Generator().manual_seed(0)
        ok = shuffled_prefix_correct(model, x, y, mask, gen)
        out["shuffled_prefix"] = float(ok[mask].float().mean())
    out["best"] = max(out.values())
    return out
