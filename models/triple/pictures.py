"""What the model believes: G's samples for every tree node, and how faithful they are.

A leaf's samples are ``G(z, leaf)``; an inner node's are its leaves mixed (each sample draws one
of the node's leaves uniformly), so the Shoes row shows sandals, sneakers and boots. The
*conditional fidelity* of a level is the share of ``G(z, y)`` that a judge (a classifier trained
on all labels, or the game's own C where no such judge was trained) assigns to ``y``'s node at
that level.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from models.gan.conditional import ConditionalGenerator
from models.reporting.plots import sample_grid_png
from models.tree.hierarchy import Hierarchy

LeafProbs = Callable[[np.ndarray], np.ndarray]
"""``uint8 [N, H, W, C] -> [N, n_leaves]`` leaf probabilities: a judge."""


@torch.no_grad()
def generate(
    generator: ConditionalGenerator, leaves: np.ndarray, seed: int, batch_size: int = 500
) -> np.ndarray:
    """``G(z, leaf)`` for each leaf in ``leaves`` as uint8 ``[N, H, W, C]`` (eval mode, seeded)."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    noise = torch.Generator().manual_seed(seed)
    out = []
    try:
        for start in range(0, len(leaves), batch_size):
            y = torch.as_tensor(leaves[start : start + batch_size], dtype=torch.long)
            z = torch.randn(len(y), generator.arch.latent_dim, generator=noise)
            x = generator(z.to(device), y.to(device)).float()
            out.append(((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
    finally:
        generator.train(was_training)
    images = torch.cat(out) if out else torch.zeros(0, generator.arch.channels, 1, 1)
    return images.permute(0, 2, 3, 1).numpy()


def node_leaf_draws(tree: Hierarchy, level: int, per_node: int, seed: int) -> np.ndarray:
    """``[n_nodes, per_node]`` leaves: for each node of ``level``, leaves drawn under it."""
    rng = np.random.default_rng(seed)
    under = tree.leaf_paths[:, level]
    return np.stack(
        [
            rng.choice(np.flatnonzero(under == node), size=per_node)
            for node in range(tree.level_sizes[level])
        ]
    )


def level_grids(
    generator: ConditionalGenerator, tree: Hierarchy, per_node: int = 8, seed: int = 0
) -> dict[str, bytes]:
    """One PNG per level: a row per node, ``per_node`` of G's samples in each."""
    grids = {}
    for level, name in enumerate(tree.level_names):
        draws = node_leaf_draws(tree, level, per_node, seed + level)
        images = generate(generator, draws.reshape(-1), seed + 100 + level)
        rows = np.repeat(np.arange(len(draws)), per_node)
        grids[name] = sample_grid_png(images, rows, tree.level_nodes[level], per_node, seed)
    return grids


def conditional_fidelity(
    generator: ConditionalGenerator,
    tree: Hierarchy,
    judge: LeafProbs,
    per_leaf: int = 100,
    seed: int = 0,
    real_spread: np.ndarray | None = None,
) -> dict[str, float]:
    """Per level, the share of ``G(z, y)`` whose judged node at that level is ``y``'s.

    ``per_leaf`` samples of every leaf; the judge's leaf decision is mapped up the tree, so a
    Sneaker judged a Sandal still counts as a faithful Shoe. Keys: ``fidelity_<level>`` and
    ``fidelity_fine`` (the leaf level); with ``real_spread`` (:func:`leaf_spread` of the train
    split) also ``diversity`` (:func:`sample_diversity`).
    """
    leaves = np.repeat(np.arange(tree.num_leaves), per_leaf)
    images = generate(generator, leaves, seed)
    out = fidelity_of(tree, leaves, judge(images).argmax(axis=1))
    if real_spread is not None:
        out["diversity"] = sample_diversity(images, leaves, real_spread)
    return out


def leaf_spread(images: np.ndarray, leaves: np.ndarray, num_leaves: int) -> np.ndarray:
    """``[num_leaves]``: how spread out each leaf's images are.

    Per leaf, the standard deviation of every pixel across the leaf's images, averaged over
    pixels; NaN for a leaf with fewer than two images.
    """
    spread = np.full(num_leaves, np.nan)
    for leaf in range(num_leaves):
        own = images[leaves == leaf]
        if len(own) > 1:
            spread[leaf] = float(own.astype(np.float32).std(axis=0).mean())
    return spread


def sample_diversity(images: np.ndarray, leaves: np.ndarray, real_spread: np.ndarray) -> float:
    """How varied G's samples of a leaf are, relative to the leaf's real images (1: as varied).

    Per leaf, :func:`leaf_spread` of G's samples divided by that of the leaf's real images
    (``real_spread``, computed once per dataset); then the mean over leaves. A generator that
    ignores its noise (mode collapse) scores near 0 however faithful its samples look, which
    fidelity alone cannot show.
    """
    fake = leaf_spread(images, leaves, len(real_spread))
    ratios = fake / np.maximum(real_spread, 1e-6)
    kept = ratios[np.isfinite(ratios)]
    return float(kept.mean()) if len(kept) else float("nan")


def fidelity_of(tree: Hierarchy, leaves: np.ndarray, judged: np.ndarray) -> dict[str, float]:
    """Per level, the share of samples of ``leaves`` whose ``judged`` leaf shares that node."""
    paths = tree.leaf_paths
    out = {
        f"fidelity_{name}": float((paths[judged, lv] == paths[leaves, lv]).mean())
        for lv, name in enumerate(tree.level_names)
    }
    out["fidelity_fine"] = out[f"fidelity_{tree.level_names[-1]}"]
    return out
