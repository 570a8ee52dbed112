"""The last word on calibration: no level's merged prediction is left worse on val.

:func:`~models.calibration.select.select_calibration` chooses each level's map by that level's
own scores, the levels above already mapped. A map chosen for a coarse level also moves every
finer level's marginal (the leaf probabilities are products down the path), and that can leave
a finer level worse than the uncalibrated model left it — measured: a run whose leaf kept the
identity but whose val fine ECE went from 0.58 % to 0.82 % through the maps above it.
:func:`keep_no_level_worse` therefore scores every subset of the chosen maps (2^depth at most,
no refits) by every level's marginal NLL and ECE on the same split, and keeps the subset with
the lowest summed NLL among those that leave no level worse; keeping none always qualifies.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor

from models.calibration.ece import level_ece
from models.tree.merge import LevelCalibration, TreeTensors, merged_log_probs, node_probs

TOLERANCE = 1e-9


def level_scores(
    logits: list[Tensor], leaf_labels: Tensor, tt: TreeTensors, maps: list[LevelCalibration]
) -> dict[str, tuple[float, float]]:
    """``{level: (marginal NLL, ECE)}`` of the merged prediction, the leaves as ``fine``."""
    log_leaf = merged_log_probs(logits, tt, maps)
    leaf = log_leaf.exp()
    ece = level_ece(leaf, leaf_labels, tt)
    paths = tt.leaf_paths[leaf_labels]
    nll = {"fine": float(-log_leaf.gather(1, leaf_labels[:, None]).mean())}
    for level, name in enumerate(tt.tree.level_names[:-1]):
        p = node_probs(leaf, tt, level).gather(1, paths[:, level : level + 1])
        nll[name] = float(-torch.log(p.clamp_min(1e-12)).mean())
    return {name: (nll[name], ece[name]) for name in ece}


def keep_no_level_worse(
    logits: list[Tensor], leaf_labels: Tensor, tt: TreeTensors, maps: list[LevelCalibration]
) -> tuple[list[LevelCalibration], list[str]]:
    """The chosen maps, less those that leave some level's merged prediction worse.

    Args:
        logits: per-level raw logits of the split the maps were chosen on.
        leaf_labels: ``[N]`` true leaves.
        tt: the tree's tensors (same device).
        maps: one map per level (identity where none was chosen).

    Returns:
        The kept maps (identity in place of a dropped one) and the names of the levels whose
        map was dropped.
    """
    base = level_scores(logits, leaf_labels, tt, [LevelCalibration() for _ in maps])
    chosen = [lv for lv, m in enumerate(maps) if m.method != "identity"]
    # keeping no map is the uncalibrated model itself: it always qualifies
    best_total, kept = sum(nll for nll, _ in base.values()), ()
    for k in range(len(chosen), 0, -1):
        for subset in combinations(chosen, k):
            trial = [m if lv in subset else LevelCalibration() for lv, m in enumerate(maps)]
            scores = level_scores(logits, leaf_labels, tt, trial)
            if all(
                scores[n][0] <= base[n][0] + TOLERANCE and scores[n][1] <= base[n][1] + TOLERANCE
                for n in base
            ):
                total = sum(nll for nll, _ in scores.values())
                if total < best_total:
                    best_total, kept = total, subset
    dropped = [tt.tree.level_names[lv] for lv in chosen if lv not in kept]
    return [m if lv in kept else LevelCalibration() for lv, m in enumerate(maps)], dropped
