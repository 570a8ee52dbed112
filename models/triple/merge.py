"""Merging a discriminator that also classifies with C: one weight, fitted on val, kept if better.

The projection discriminator reads as a classifier (``softmax_y <e(y), phi(x)>``), and the
semi-supervised GAN's K-way discriminator is one. The merged leaf distribution is the
renormalised geometric pool ``(1 - w) log p_C + w log p_D``: pooling at the leaf level keeps every
prediction a path of the tree, and each level's distribution is the sum over its leaves. ``w``
is chosen on the validation split from a grid; ``w = 0`` (C alone) wins ties, so the merge is
kept only when it measured better there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def merge_log_probs(log_p_c: Tensor, log_p_d: Tensor, weight: float) -> Tensor:
    """``[N, n_leaves]`` merged leaf log-probabilities (renormalised)."""
    return torch.log_softmax((1.0 - weight) * log_p_c + weight * log_p_d, dim=1)


def fit_merge_weight(
    log_p_c: Tensor,
    log_p_d: Tensor,
    labels: Tensor,
    grid: Sequence[float] = tuple(i / 10 for i in range(11)),
) -> tuple[float, dict[float, float]]:
    """The weight of D with the best leaf accuracy on these (validation) images.

    Returns:
        ``(weight, {weight: accuracy})``; the weight is 0 unless some ``w > 0`` is strictly better.
    """
    scores = {
        float(w): float((merge_log_probs(log_p_c, log_p_d, w).argmax(1) == labels).float().mean())
        for w in grid
    }
    best = max(scores.values())
    weight = min(w for w, acc in scores.items() if acc == best)
    if scores.get(0.0, -1.0) == best:
        weight = 0.0
    return weight, scores
