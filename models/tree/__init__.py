"""The label tree and probabilities over it.

:class:`Hierarchy` holds a tree of any depth whose leaves are the dataset's classes (built-in
trees in ``trees/``; YAML of your own); :mod:`.merge` turns per-level logits into one
distribution over the leaves (the product of conditionals along each path), decodes it, and is
the one place temperature scaling is applied (:func:`scale_logits`, :func:`merged_log_probs`).
"""

from models.tree.hierarchy import Hierarchy, HierarchyError, builtin_tree_path, load_builtin_tree
from models.tree.merge import (
    TreeTensors,
    conditional_log_probs,
    decode_global,
    decode_greedy,
    leaf_log_probs,
    merged_log_probs,
    node_probs,
    scale_logits,
)

__all__ = [
    "Hierarchy",
    "HierarchyError",
    "TreeTensors",
    "builtin_tree_path",
    "conditional_log_probs",
    "decode_global",
    "decode_greedy",
    "leaf_log_probs",
    "load_builtin_tree",
    "merged_log_probs",
    "node_probs",
    "scale_logits",
]
