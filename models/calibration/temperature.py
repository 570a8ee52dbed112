"""Temperature scaling: one temperature per tree level, fitted on the validation split by NLL.

Level ``l``'s logits are divided by ``T_l`` before the conditional softmax, so ``T_l`` is fitted
on that level's conditional NLL given the true parent, independently of the other levels. The
merged leaf probability is then a product of calibrated conditionals. Temperature scaling never
changes a level's conditional ranking, so greedy decoding is unchanged; the global argmax over
leaves may move slightly (the product of differently tempered terms).
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.tree.merge import (
    CalibrationMaps,
    TreeTensors,
    conditional_log_probs,
    level_conditional_log_probs,
    scale_logits,
)


def fit_temperatures(
    logits: list[Tensor], level_labels: Tensor, tt: TreeTensors, max_iter: int = 100
) -> Tensor:
    """``[depth]`` temperatures minimising each level's conditional NLL on held-out data.

    Args:
        logits: per-level ``[N, n_l]`` logits on the validation split.
        level_labels: ``[N, depth]`` true node per level.
        tt: the tree's tensors.
        max_iter: L-BFGS iterations per level.
    """
    temps = [
        _fit_level_temperature(z.detach().float(), level_labels[:, lv : lv + 1], tt, lv, max_iter)
        for lv, z in enumerate(logits)
    ]
    return torch.tensor(temps, device=logits[0].device)


def _fit_level_temperature(
    z: Tensor, y: Tensor, tt: TreeTensors, level: int, max_iter: int
) -> float:
    log_t = torch.zeros((), device=z.device, requires_grad=True)  # T = exp(log_t) > 0
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = -level_conditional_log_probs(z / log_t.exp(), tt, level).gather(1, y).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(log_t.detach().exp())


def level_nll(
    logits: list[Tensor], level_labels: Tensor, tt: TreeTensors, calibration: CalibrationMaps = None
) -> list[float]:
    """Per-level conditional NLL (for reporting before/after calibration)."""
    cond = conditional_log_probs(scale_logits(logits, calibration, tt), tt)
    return [float(-c.gather(1, level_labels[:, lv : lv + 1]).mean()) for lv, c in enumerate(cond)]
