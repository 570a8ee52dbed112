"""What the game may train on, checked before any training: labels, tree and labelled subset.

Every failure names what was wrong: the missing key, the leaf without an example, the leaf the
data never shows. Nothing is trained (or written) before these checks pass.
"""

from __future__ import annotations

import numpy as np

from models.data.dataset import stratified_fraction
from models.tree.hierarchy import Hierarchy


class TripleInputError(ValueError):
    """Input the Triple-GAN game cannot be played on; the message names the key or the leaf."""


def labelled_subset(
    tree: Hierarchy,
    labels: np.ndarray | None,
    fraction: float,
    seed: int,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """The labelled indices of the train split, checked against the tree.

    Args:
        tree: the label tree.
        labels: ``[N]`` leaf labels of the train split (None fails: the game needs labels).
        fraction: ``classifier.label_fraction``, used when ``indices`` is None.
        seed: ``classifier.seed``: which stratified subset.
        indices: an explicit labelled subset instead of the stratified fraction.

    Raises:
        TripleInputError: no labels; labels outside the tree; a leaf the train split never shows
            (the tree does not match the data); a leaf without a labelled example.
    """
    if labels is None or len(labels) == 0:
        raise TripleInputError(
            "gan.mode=triple needs labels: the label generator C is trained on the labelled "
            "part of the train split, and none were given"
        )
    labels = np.asarray(labels)
    try:
        tree.check_labels(labels, where="train labels")
    except ValueError as err:
        raise TripleInputError(f"the tree does not match the labels: {err}") from None
    present = np.bincount(labels.astype(np.int64), minlength=tree.num_leaves)
    for leaf in np.flatnonzero(present == 0):
        raise TripleInputError(
            f"the tree {tree.name!r} does not match the labels: leaf {_leaf(tree, leaf)} has no "
            "image in the train split (remove it from the tree, or add images of it)"
        )
    if indices is None:
        where = f"classifier.label_fraction={fraction:g} (seed {seed})"
        indices = stratified_fraction(labels, fraction, seed)
    else:
        where = "the given labelled indices"
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(labels)):
            raise TripleInputError(f"{where} index outside the train split (0..{len(labels) - 1})")
    counts = np.bincount(labels[indices].astype(np.int64), minlength=tree.num_leaves)
    for leaf in np.flatnonzero(counts == 0):
        raise TripleInputError(
            f"{where} leaves leaf {_leaf(tree, leaf)} without a labelled example: G cannot be "
            "taught that leaf; raise the fraction or label an example of it"
        )
    return np.sort(indices)


def _leaf(tree: Hierarchy, leaf: int) -> str:
    """``'Sandal' (Goods/Shoes/Sandal)``."""
    return f"{tree.leaves[leaf]!r} ({'/'.join(tree.path_names(int(leaf)))})"


def level_weights(weights: list[float] | None, tree: Hierarchy) -> list[float]:
    """``classifier.level_weights`` (None: 1 per level), checked against the tree's depth."""
    out = weights or [1.0] * tree.depth
    if len(out) != tree.depth:
        raise TripleInputError(
            f"classifier.level_weights has {len(out)} entries for a tree of depth {tree.depth}"
        )
    return out
