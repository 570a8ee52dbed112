"""An attack aimed at one coarse level: what the robustness gate reads for that level.

The attack grid (:mod:`models.robustness.evaluate`) maximises the merged *leaf* prediction's
loss and scores every level from the adversarial images, so its coarse-level numbers say how
often a coarse node survives an attack on the leaf. An attack on the coarse level itself is
stronger: on the default model PGD at eps 0.05 leaves 88.4 % of categories right when it aims at
the leaf, 59.9 % when it aims at the category (``bench/results/level_attack.md``). Here the same
attack maximises the level's own NLL: its marginal, ``logsumexp`` of the merged leaf
log-probabilities under each node.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.attacks.evasion import (
    MergedLeafModel,
    art_classifier,
    make_attack,
    make_autoattack,
    predict_leaf_log_probs,
    run_attack,
)
from models.robustness.config import FINE, RobustnessConfig, level_keys
from models.robustness.scores import level_scores
from models.tree.hierarchy import Hierarchy


def level_marginals(leaf_log_probs: Tensor, node_of_leaf: Tensor, n_nodes: int) -> Tensor:
    """``[B, n_nodes]`` log-probabilities of a level's nodes from ``[B, n_leaves]`` leaf ones."""
    return torch.stack(
        [torch.logsumexp(leaf_log_probs[:, node_of_leaf == k], 1) for k in range(n_nodes)], 1
    )


class MergedLevelModel(nn.Module):
    """``[B, C, H, W]`` in [0, 1] -> ``[B, n_nodes]`` log-probabilities of one level's nodes."""

    def __init__(self, merged: MergedLeafModel, level: int) -> None:
        super().__init__()
        self.merged = merged
        self.node_of_leaf = merged.tt.leaf_paths[:, level]
        self.n_nodes = merged.tt.tree.level_sizes[level]

    def forward(self, x: Tensor) -> Tensor:
        """The level's marginal log-probabilities."""
        return level_marginals(self.merged(x), self.node_of_leaf, self.n_nodes)


def build_attack(estimator: Any, name: str, eps: float, config: RobustnessConfig) -> Any:
    """ART's ``name`` attack (``fgsm``, ``pgd`` or ``autoattack``) at ``eps``, as configured."""
    if name == "autoattack":
        return make_autoattack(
            estimator,
            eps,
            config.autoattack_iter,
            config.autoattack_restarts,
            config.autoattack_square_queries,
            config.batch_size,
        )
    return make_attack(
        estimator,
        name,
        eps,
        steps=config.pgd_steps,
        step_ratio=config.pgd_step_ratio,
        random_init=config.pgd_random_init,
        batch_size=config.batch_size,
    )


def adversarial_images(
    model: nn.Module,
    n_classes: int,
    x: np.ndarray,
    y: np.ndarray,
    attack: str,
    eps: float,
    config: RobustnessConfig,
) -> np.ndarray:
    """``attack``'s images at ``eps`` against ``model``'s NLL over ``n_classes`` (labels ``y``)."""
    device = next(model.parameters()).device
    estimator = art_classifier(model, tuple(x.shape[1:]), device, n_classes)
    return run_attack(build_attack(estimator, attack, eps, config), model, x, y, config.seed)


def attack_on_level(
    merged: MergedLeafModel,
    x: np.ndarray,
    y: np.ndarray,
    tree: Hierarchy,
    level: str,
    attack: str,
    eps: float,
    config: RobustnessConfig,
) -> dict[str, float]:
    """Every level's scores under ``attack`` at ``eps`` aimed at ``level``'s own loss.

    Args:
        merged: the calibrated merged leaf model.
        x: float32 ``[N, C, H, W]`` in [0, 1].
        y: their ``[N]`` leaves.
        tree: the label tree.
        level: a coarse level's name (``fine`` is the leaf attack of the grid itself).
        attack: ``fgsm``, ``pgd`` or ``autoattack``.
        eps: the L-inf radius on [0, 1] pixels.
        config: the attacks' steps, restarts, batch size and seed.

    Returns:
        :func:`level_scores` of the adversarial images and ``max_linf``.
    """
    names = level_keys(tree)
    if level == FINE or level not in names:
        raise ValueError(f"an attack on a level's own loss needs a coarse level of {names[:-1]}")
    index = names.index(level)
    nodes = MergedLevelModel(merged, index)
    target = tree.level_labels(y, index)
    adv = adversarial_images(nodes, nodes.n_nodes, x, target, attack, eps, config)
    scores = level_scores(predict_leaf_log_probs(merged, adv), y, tree)
    scores["max_linf"] = float(np.abs(adv - x).max())
    return scores
