"""Ways of turning per-level outputs into one prediction, and the hierarchical scores of each.

- ``product``: the project's merge, the product of calibrated conditionals along each path,
  decoded by the argmax over leaves;
- ``greedy``: the best child at each level, top-down;
- ``multiply``, ``arithmetic``, ``geometric``: HiClass' probability combiners (Miranda et al.,
  ``hiclass.probability_combiner``) applied to the level probabilities ``P(node_l | x)`` (our
  marginals, what a local classifier per level estimates): a node's score is the product, the
  arithmetic mean or the geometric mean of its own and its ancestors' level probabilities, then
  each level is normalised;
- ``crm``: conditional-risk minimisation (Karthik et al., ICLR 2021): the leaf with the least
  expected LCA height under the merged distribution, ``argmin_j sum_i P(i | x) H(i, j)``.

Each decoding is scored by :func:`decoding_metrics`: accuracy per level, top-label ECE of its
confidence, classwise ECE, hierarchical precision/recall/F1 and mistake severity.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.calibration.ece import classwise_ece, decision_ece
from models.tree.hierarchy import Hierarchy
from models.tree.merge import TreeTensors, decode_greedy, node_probs

DECODINGS = ("product", "greedy", "multiply", "arithmetic", "geometric", "crm")


def combine_levels(level_probs: list[Tensor], tt: TreeTensors, how: str) -> Tensor:
    """HiClass' combiners on per-level probabilities: ``[N, n_leaves]`` normalised leaf scores.

    Args:
        level_probs: ``[N, n_l]`` probability of each node of each level.
        tt: the tree's tensors.
        how: ``multiply``, ``arithmetic`` or ``geometric``.
    """
    if how not in ("multiply", "arithmetic", "geometric"):
        raise ValueError(f"unknown combiner {how!r}")
    scores = level_probs[0]
    for level in range(1, tt.depth):
        parent_scores = scores[:, tt.parents[level]]
        own = level_probs[level]
        if how == "multiply":
            scores = parent_scores * own
        elif how == "arithmetic":  # running mean over the path: (l * mean_above + own) / (l+1)
            scores = (level * parent_scores + own) / (level + 1)
        else:  # geometric: exp of the running mean of logs
            logs = (level * parent_scores.clamp_min(1e-30).log() + own.clamp_min(1e-30).log()) / (
                level + 1
            )
            scores = logs.exp()
    return scores / scores.sum(dim=1, keepdim=True)


def decode(
    leaf_probs: Tensor, cond_log_probs: list[Tensor], tt: TreeTensors, how: str
) -> tuple[Tensor, Tensor]:
    """``(predicted leaf [N], leaf probabilities [N, n_leaves])`` of one decoding.

    The probabilities are the merged ones except for HiClass' combiners, which give their own.
    """
    if how == "product":
        return leaf_probs.argmax(1), leaf_probs
    if how == "greedy":
        return decode_greedy(cond_log_probs, tt), leaf_probs
    if how == "crm":
        heights = torch.as_tensor(
            tt.tree.lca_height, dtype=leaf_probs.dtype, device=leaf_probs.device
        )
        return (leaf_probs @ heights).argmin(1), leaf_probs
    levels = [node_probs(leaf_probs, tt, lv) for lv in range(tt.depth)]
    probs = combine_levels(levels, tt, how)
    return probs.argmax(1), probs


def hierarchical_prf(pred: np.ndarray, labels: np.ndarray, tree: Hierarchy) -> dict[str, float]:
    """Hierarchical precision, recall and F1 (micro; Kiritchenko et al.), HiClass' definitions.

    Computed by ``hiclass.metrics`` on the predicted and true paths (node names prefixed by their
    level so that equal names on two levels stay apart). Where HiClass is not installed (a bare
    GPU machine) the same numbers come from their closed form: every prediction here is a whole
    path of the tree's depth, so hP = hR = hF1 = the mean share of the true path predicted.
    """
    paths = tree.leaf_paths
    try:
        from hiclass import metrics
    except ImportError:
        share = float((paths[pred] == paths[labels]).mean())
        return {"hier_precision": share, "hier_recall": share, "hier_f1": share, "source": "closed"}

    def named(leaves: np.ndarray) -> np.ndarray:
        return np.array(
            [[f"{lv}:{tree.level_nodes[lv][n]}" for lv, n in enumerate(paths[i])] for i in leaves]
        )

    y_true, y_pred = named(labels), named(pred)
    return {
        "hier_precision": float(metrics.precision(y_true, y_pred)),
        "hier_recall": float(metrics.recall(y_true, y_pred)),
        "hier_f1": float(metrics.f1(y_true, y_pred)),
        "source": "hiclass",
    }


def decoding_metrics(
    leaf_probs: Tensor, cond_log_probs: list[Tensor], labels: np.ndarray, tt: TreeTensors
) -> dict[str, dict[str, Any]]:
    """Per decoding: accuracy per level, ECE, classwise ECE, hierarchical P/R/F1, severity."""
    tree = tt.tree
    y = torch.from_numpy(labels).to(leaf_probs.device)
    out: dict[str, dict[str, Any]] = {}
    for how in DECODINGS:
        pred, probs = decode(leaf_probs, cond_log_probs, tt, how)
        p = pred.cpu().numpy()
        row: dict[str, Any] = {
            f"accuracy_{name}": float(
                (tree.leaf_paths[p, lv] == tree.leaf_paths[labels, lv]).mean()
            )
            for lv, name in enumerate(tree.level_names)
        }
        row["accuracy_fine"] = float((p == labels).mean())
        conf = probs.gather(1, pred[:, None]).squeeze(1)
        row["ece_fine"] = decision_ece(conf, pred == y)
        row["classwise_ece_fine"] = classwise_ece(probs, y)
        wrong = p != labels
        row["mistake_severity"] = (
            float(tree.lca_height[p[wrong], labels[wrong]].mean()) if wrong.any() else 0.0
        )
        row["mean_lca_height"] = float(tree.lca_height[p, labels].mean())
        out[how] = row | hierarchical_prf(p, labels, tree)
    return out
