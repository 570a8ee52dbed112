"""Calibration strategies: fit one level's map on held-out logits by that level's NLL.

Each strategy is an affine map of a level's scores (:class:`models.tree.merge.LevelCalibration`),
fitted by L-BFGS on the level's conditional NLL given the true parent:

- ``temperature`` (Guo et al. 2017): one scalar, never changes a ranking;
- ``vector``: a scale and a bias per node;
- ``matrix``: a full affine map of the logits, block-diagonal over sibling groups;
- ``dirichlet`` (Kull et al. 2019): the same on the conditional log-probabilities.

The two last ones carry the ODIR penalty of Kull et al. (off-diagonal weights and biases pulled
to zero) so that a few thousand validation images do not overfit them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.tree.merge import LevelCalibration, TreeTensors, level_conditional_log_probs

STRATEGIES = ("temperature", "vector", "matrix", "dirichlet")


def sibling_block_mask(tt: TreeTensors, level: int) -> Tensor:
    """``[n_l, n_l]`` True where two nodes of ``level`` share a parent."""
    parents = tt.parents[level]
    return parents[:, None] == parents[None, :]


def _to_map(method: str, params: list[Tensor], mask: Tensor | None) -> LevelCalibration:
    if method == "temperature":
        return LevelCalibration.temperature(float(params[0].detach().exp()))
    w, b = (p.detach().cpu() for p in params)
    if mask is not None:
        w = w * mask.cpu()
    return LevelCalibration(method, tuple(w.tolist()), tuple(b.tolist()))


def fit_level_map(
    method: str,
    z: Tensor,
    y: Tensor,
    tt: TreeTensors,
    level: int,
    odir: float = 1e-2,
    max_iter: int = 200,
) -> LevelCalibration:
    """Fit one level's calibration map by its conditional NLL (plus ODIR for matrix maps).

    Args:
        method: one of :data:`STRATEGIES` (or ``identity``).
        z: ``[N, n_l]`` raw logits of the level on held-out images.
        y: ``[N]`` true node of the level.
        tt: the tree's tensors (same device).
        level: which level.
        odir: weight of the off-diagonal and bias penalty of ``matrix`` and ``dirichlet``.
        max_iter: L-BFGS iterations.
    """
    if method == "identity":
        return LevelCalibration()
    if method not in STRATEGIES:
        raise ValueError(f"unknown calibration strategy {method!r}; known: {STRATEGIES}")
    z = z.detach().float()
    n = z.shape[1]
    mask = sibling_block_mask(tt, level).float() if method in ("matrix", "dirichlet") else None
    if method == "temperature":
        params = [torch.zeros((), device=z.device)]  # log T
    elif method == "vector":
        params = [torch.ones(n, device=z.device), torch.zeros(n, device=z.device)]
    else:
        params = [torch.eye(n, device=z.device), torch.zeros(n, device=z.device)]
    for p in params:
        p.requires_grad_(True)
    eye = torch.eye(n, device=z.device)
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        cal = _apply(method, params, mask, z, tt, level)
        loss = -level_conditional_log_probs(cal, tt, level).gather(1, y[:, None]).mean()
        if mask is not None:
            off = params[0] * mask * (1 - eye)
            pairs = max(1.0, float((mask * (1 - eye)).sum()))
            loss = loss + odir * ((off**2).sum() / pairs + (params[1] ** 2).mean())
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return _to_map(method, params, mask)


def _apply(
    method: str, params: list[Tensor], mask: Tensor | None, z: Tensor, tt: TreeTensors, level: int
) -> Tensor:
    if method == "temperature":
        return z / params[0].exp()
    if method == "vector":
        return z * params[0] + params[1]
    x = level_conditional_log_probs(z, tt, level) if method == "dirichlet" else z
    return x @ (params[0] * mask).T + params[1]
