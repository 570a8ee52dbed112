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
from dataclasses import dataclass
from typing import Any

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


METHODS = ("identity", "temperature", "vector", "matrix", "dirichlet")


@dataclass(frozen=True)
class LevelCalibration:
    """One level's calibration map, applied to its logits before the conditional softmax.

    Every method is an affine map ``z' = W x + b`` of the level's scores ``x``:

    - ``identity``: ``z' = z``; ``temperature``: ``z' = z / T`` (``weight = [T]``, Guo et al.
      2017); ``vector``: ``z' = w * z + b`` (per node);
    - ``matrix``: ``z' = W z + b``; ``dirichlet``: ``z' = W log P(node | parent) + b`` (Kull et
      al. 2019), ``W`` block-diagonal over the sibling groups, so that each parent's conditional
      distribution gets its own map.

    Attributes:
        method: one of :data:`METHODS`.
        weight: ``[T]``, ``[n_l]`` or ``[n_l, n_l]`` as nested lists (JSON-able), empty for
            ``identity``.
        bias: ``[n_l]`` or empty.
    """

    method: str = "identity"
    weight: tuple = ()
    bias: tuple = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; known: {METHODS}")

    @classmethod
    def temperature(cls, t: float) -> LevelCalibration:
        """Temperature scaling by ``t``."""
        return cls("temperature", (float(t),))

    @property
    def temperature_value(self) -> float | None:
        """``T`` of a temperature map, 1.0 for the identity, None for the other maps."""
        return {"identity": 1.0, "temperature": self.weight[0] if self.weight else None}.get(
            self.method
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the classifier artifact stores it)."""
        return {"method": self.method, "weight": _lists(self.weight), "bias": _lists(self.bias)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LevelCalibration:
        """Inverse of :meth:`to_dict`."""
        return cls(data["method"], _tuples(data.get("weight", ())), _tuples(data.get("bias", ())))

    def apply(self, z: Tensor, tt: TreeTensors | None, level: int) -> Tensor:
        """The calibrated logits of one level (``[B, n_l]``)."""
        if self.method == "identity":
            return z
        w = torch.as_tensor(self.weight, dtype=z.dtype, device=z.device)
        if self.method == "temperature":
            return z / w[0]
        b = torch.as_tensor(self.bias, dtype=z.dtype, device=z.device)
        if self.method == "vector":
            return z * w + b
        if self.method == "dirichlet":
            if tt is None:
                raise ValueError("dirichlet calibration needs the tree's tensors")
            z = level_conditional_log_probs(z, tt, level)
        return z @ w.T + b


CalibrationMaps = Sequence["float | LevelCalibration"] | Tensor | None


def scale_logits(
    logits: list[Tensor], calibration: CalibrationMaps, tt: TreeTensors | None = None
) -> list[Tensor]:
    """Per-level logits through their level's calibration map (unchanged when ``None``).

    The one place calibration is applied: :mod:`models.calibration` fits the maps, and every
    calibrated probability (serving, evaluation, attacks, drift) is computed through here. A
    number is a temperature; a :class:`LevelCalibration` any of the maps (``dirichlet`` needs
    ``tt``).
    """
    if calibration is None:
        return list(logits)
    if len(calibration) != len(logits):
        raise ValueError(f"{len(calibration)} calibration maps for {len(logits)} levels")
    out = []
    for level, (z, c) in enumerate(zip(logits, calibration, strict=True)):
        out.append(c.apply(z, tt, level) if isinstance(c, LevelCalibration) else z / c)
    return out


def merged_log_probs(
    logits: list[Tensor], tt: TreeTensors, calibration: CalibrationMaps = None
) -> Tensor:
    """``[B, n_leaves]`` log P(leaf) from per-level logits, calibrated when given."""
    return leaf_log_probs(conditional_log_probs(scale_logits(logits, calibration, tt), tt), tt)


def _lists(x: Any) -> Any:
    return [_lists(v) for v in x] if isinstance(x, tuple | list) else float(x)


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, tuple | list) else float(x)


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
