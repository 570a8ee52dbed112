"""The serving path's merge: calibrated per-level logits -> leaf probabilities, in NumPy.

The same numbers as :func:`models.tree.merge.merged_log_probs` (``exp`` of it) up to float32
rounding, which a unit test holds it to for every calibration method. Why a second version:
served one image at a time, the torch merge is some twenty small operations of 5-20 us each,
and the calibration maps' weights were made tensors again on every call; in NumPy, with the
maps' arrays built once, the same work is a few microseconds per operation. Measured on the
default model (one image after its ``static-int8`` forward pass, one thread, 2,000 calls):
379 -> 125 us; served, ``/classify`` p50 3.49 -> 3.16 ms (5 interleaved rounds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.tree.hierarchy import Hierarchy
from models.tree.merge import LevelCalibration


class _LevelMap:
    """One level's calibration as arrays: ``z' = W x + b`` (see :class:`LevelCalibration`)."""

    def __init__(self, calibration: float | LevelCalibration) -> None:
        if not isinstance(calibration, LevelCalibration):
            calibration = LevelCalibration.temperature(float(calibration))
        self.method = calibration.method
        self.weight = np.asarray(calibration.weight, np.float32)
        self.bias = np.asarray(calibration.bias, np.float32)


class NumpyMerge:
    """Per-level logits ``[B, n_l]`` -> ``[B, n_leaves]`` calibrated leaf probabilities.

    Args:
        tree: the label tree.
        calibration: one map per level (a number is a temperature), or ``None``.

    Raises:
        ValueError: not one map per level.
    """

    def __init__(
        self, tree: Hierarchy, calibration: Sequence[float | LevelCalibration] | None = None
    ) -> None:
        if calibration is not None and len(calibration) != tree.depth:
            raise ValueError(f"{len(calibration)} calibration maps for {tree.depth} levels")
        self._maps = None if calibration is None else [_LevelMap(c) for c in calibration]
        self._leaf_paths = [np.asarray(tree.leaf_paths)[:, lv] for lv in range(tree.depth)]
        self._parents = [np.asarray(p) for p in tree.parents]  # [n_l]: each node's parent
        self._outside = []  # [P, n_l]: True where node j is not a child of parent p
        for level, size in enumerate(tree.level_sizes):
            n_parents = 1 if level == 0 else tree.level_sizes[level - 1]
            inside = np.zeros((n_parents, size), bool)
            inside[self._parents[level], np.arange(size)] = True
            self._outside.append(~inside)

    def leaf_probs(self, logits: Sequence[np.ndarray]) -> np.ndarray:
        """``[B, n_leaves]`` float32 calibrated leaf probabilities of per-level logits."""
        total = None
        for level, z in enumerate(logits):
            z = np.asarray(z, np.float32)
            if self._maps is not None:
                z = self._calibrate(z, level)
            cond = self._conditional(z, level)[:, self._leaf_paths[level]]
            total = cond if total is None else total + cond
        return np.exp(total)

    def _calibrate(self, z: np.ndarray, level: int) -> np.ndarray:
        m = self._maps[level]
        if m.method == "identity":
            return z
        if m.method == "temperature":
            return z / m.weight[0]
        if m.method == "vector":
            return z * m.weight + m.bias
        if m.method == "dirichlet":
            z = self._conditional(z, level)
        return z @ m.weight.T + m.bias

    def _conditional(self, z: np.ndarray, level: int) -> np.ndarray:
        """``[B, n_l]`` log P(node | its parent): a logsumexp per sibling group."""
        grouped = np.where(self._outside[level][None], -np.inf, z[:, None, :])  # [B, P, n_l]
        top = grouped.max(axis=2, keepdims=True)  # every group has a child: finite
        log_norm = np.log(np.exp(grouped - top).sum(axis=2)) + top[..., 0]  # [B, P]
        return z - log_norm[:, self._parents[level]]
