"""Merging per-level classifiers into one consistent distribution over the tree's leaves.

Each level ``l`` has logits over all of its nodes; a node's *conditional* probability given its
parent is the softmax of its logit among its siblings (the other nodes are masked out). Then

    P(leaf) = prod_l P(path_l(leaf) | path_{l-1}(leaf)),

which sums to 1 over the leaves, and every prediction is a valid path. Two decodings are given:
the global argmax over leaves and greedy top-down (best node at each level among the children of
the node chosen above).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from models.tree.hierarchy import Hierarchy


class TreeTensors:
    """The tree as tensors on a device: paths, parents and sibling masks per level."""

    def __init__(self, tree: Hierarchy, device: torch.device | str = "cpu") -> None:
        self.tree = tree
        self.leaf_paths = torch.as_tensor(tree.leaf_paths, device=device)  # [n_leaves, depth]
        self.parents = [torch.as_tensor(p, device=device) for p in tree.parents]  # [n_l] each
        # sibling_masks[l][p, j]: node j of level l is a child of node p of level l-1
        self.sibling_masks = []
        for level, size in enumerate(tree.level_sizes):
            n_parents = 1 if level == 0 else tree.level_sizes[level - 1]
            mask = torch.zeros(n_parents, size, dtype=torch.bool, device=device)
            mask[self.parents[level], torch.arange(size, device=device)] = True
            self.sibling_masks.append(mask)
        # leaf_onehot[l]: [n_leaves, n_l], which node of level l each leaf descends from
        self.leaf_onehot = [
            torch.nn.functional.one_hot(self.leaf_paths[:, lv], size).float()
            for lv, size in enumerate(tree.level_sizes)
        ]

    @property
    def depth(self) -> int:
        """Number of levels."""
        return self.tree.depth


def level_conditional_log_probs(z: Tensor, tt: TreeTensors, level: int) -> Tensor:
    """``[B, n_l]``: ``log P(node | its parent)`` for every node of one level."""
    z = z.float()
    mask = tt.sibling_masks[level]  # [P, n_l]
    grouped = z[:, None, :].masked_fill(~mask[None], float("-inf"))  # [B, P, n_l]
    log_norm = grouped.logsumexp(dim=-1)  # [B, P]: one normaliser per parent
    return z - log_norm[:, tt.parents[level]]


def conditional_log_probs(logits: list[Tensor], tt: TreeTensors) -> list[Tensor]:
    """Per level, ``log P(node | its parent)`` for every node: ``[B, n_l]`` each."""
    return [level_conditional_log_probs(z, tt, level) for level, z in enumerate(logits)]


def leaf_log_probs(cond: list[Tensor], tt: TreeTensors) -> Tensor:
    """``[B, n_leaves]``: log P(leaf) as the sum of conditional log-probabilities on its path."""
    return sum(c[:, tt.leaf_paths[:, level]] for level, c in enumerate(cond))


def node_probs(leaf_probs: Tensor, tt: TreeTensors, level: int) -> Tensor:
    """``[B, n_l]``: marginal probability of each node of ``level`` (sum over its leaves)."""
    return leaf_probs @ tt.leaf_onehot[level]


def scale_logits(
    logits: list[Tensor], temperatures: Sequence[float] | Tensor | None
) -> list[Tensor]:
    """Per-level logits divided by their level's temperature (unchanged when ``None``).

    The one place temperature scaling is written: calibration fits the temperatures, and every
    calibrated probability (serving, evaluation, attacks, drift) is computed through here.
    """
    if temperatures is None:
        return list(logits)
    if len(temperatures) != len(logits):
        raise ValueError(f"{len(temperatures)} temperatures for {len(logits)} levels")
    return [z / t for z, t in zip(logits, temperatures, strict=True)]


def merged_log_probs(
    logits: list[Tensor], tt: TreeTensors, temperatures: Sequence[float] | Tensor | None = None
) -> Tensor:
    """``[B, n_leaves]`` log P(leaf) from per-level logits, temperature-scaled when given."""
    return leaf_log_probs(conditional_log_probs(scale_logits(logits, temperatures), tt), tt)


def decode_global(leaf_log_prob: Tensor) -> Tensor:
    """``[B]`` most probable leaf (a complete path by construction)."""
    return leaf_log_prob.argmax(dim=1)


def decode_greedy(cond: list[Tensor], tt: TreeTensors) -> Tensor:
    """``[B]`` leaf reached by taking the most probable child at each level, top-down."""
    batch = cond[0].shape[0]
    chosen = torch.zeros(batch, dtype=torch.long, device=cond[0].device)  # the root's index
    for level, c in enumerate(cond):
        allowed = tt.sibling_masks[level][chosen]  # [B, n_l]: children of the chosen parent
        chosen = c.masked_fill(~allowed, float("-inf")).argmax(dim=1)
    # the leaf level's nodes are numbered in leaf order, so the node index is the leaf label
    return chosen


def independent_argmax_paths(scores: list[Tensor]) -> Tensor:
    """``[B, depth]`` argmax of each level's scores on its own (paths may be inconsistent)."""
    return torch.stack([z.argmax(dim=1) for z in scores], dim=1)


def path_consistency(paths: Tensor, tt: TreeTensors) -> float:
    """Share of rows whose per-level nodes form a path of the tree."""
    ok = torch.ones(paths.shape[0], dtype=torch.bool, device=paths.device)
    for level in range(1, tt.depth):
        ok &= tt.parents[level][paths[:, level]] == paths[:, level - 1]
    return float(ok.float().mean())
