"""Choose each level's calibration map on the validation split, never making a level worse.

Top-down over the levels, every strategy (and the identity) is scored by K-fold
cross-validation on the validation images: the map is fitted on K-1 folds and predicts the held-out
fold. A level's score is its conditional NLL and the ECE of its *marginal* prediction (the
levels above it calibrated as already chosen, out of fold as well). A strategy is admissible when
it is no worse than the identity on both; among those, the lowest NLL wins. The winner is then
refitted on the whole validation split and kept only if, there too, the level's NLL and ECE are
no worse than the identity's: calibration never leaves a level worse on val than it found it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.calibration.ece import expected_calibration_error
from models.calibration.strategies import STRATEGIES, fit_level_map
from models.tree.merge import LevelCalibration, TreeTensors, level_conditional_log_probs


def _level_scores(cond: Tensor, upper: Tensor, y: Tensor, tt: TreeTensors, level: int) -> tuple:
    """Conditional NLL, marginal ECE and the marginal of one level's conditional log-probs."""
    marginal = cond.exp() if level == 0 else upper[:, tt.parents[level]] * cond.exp()
    nll = float(-cond.gather(1, y[:, None]).mean())
    return nll, expected_calibration_error(marginal, y), marginal


def _folds(n: int, k: int, seed: int, device: torch.device) -> list[Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    return list(perm.chunk(k))


def select_calibration(
    logits: list[Tensor],
    level_labels: Tensor,
    tt: TreeTensors,
    strategies: tuple[str, ...] = STRATEGIES,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 200,
) -> tuple[list[LevelCalibration], dict[str, Any]]:
    """One calibration map per level, chosen by cross-validated NLL and ECE on held-out data.

    Args:
        logits: per-level ``[N, n_l]`` raw logits of the validation split.
        level_labels: ``[N, depth]`` true node per level.
        tt: the tree's tensors (same device).
        strategies: the candidates besides the identity.
        folds: cross-validation folds.
        seed: the folds' shuffle.
        max_iter: L-BFGS iterations per fit.

    Returns:
        The maps, and per level the cross-validated scores of every candidate, the choice and
        the whole-split NLL/ECE before and after.
    """
    n = len(level_labels)
    parts = _folds(n, folds, seed, level_labels.device)
    upper_oof = upper_fit = upper_raw = None
    maps: list[LevelCalibration] = []
    report: dict[str, Any] = {}
    for level, z in enumerate(logits):
        z, y = z.detach().float(), level_labels[:, level]
        scores: dict[str, dict[str, float]] = {}
        oof: dict[str, Tensor] = {}
        for method in ("identity", *strategies):
            cond = torch.empty_like(z)
            for held in parts:
                train = torch.ones(n, dtype=torch.bool, device=z.device)
                train[held] = False
                level_map = fit_level_map(method, z[train], y[train], tt, level, max_iter=max_iter)
                cond[held] = level_conditional_log_probs(
                    level_map.apply(z[held], tt, level), tt, level
                )
            nll, ece, marginal = _level_scores(cond, upper_oof, y, tt, level)
            scores[method], oof[method] = {"cv_nll": nll, "cv_ece": ece}, marginal
        ident = scores["identity"]
        admissible = [
            m
            for m, s in scores.items()
            if s["cv_nll"] <= ident["cv_nll"] and s["cv_ece"] <= ident["cv_ece"]
        ]
        choice = min(admissible, key=lambda m: scores[m]["cv_nll"])
        # refit on the whole split; keep it only if, there too, the level is no worse than the
        # uncalibrated model left it (NLL and ECE); else fall back to the identity
        level_map = fit_level_map(choice, z, y, tt, level, max_iter=max_iter)
        cond = level_conditional_log_probs(z, tt, level)
        after = _level_scores(
            level_conditional_log_probs(level_map.apply(z, tt, level), tt, level),
            upper_fit,
            y,
            tt,
            level,
        )
        raw = _level_scores(cond, upper_raw, y, tt, level)
        if after[0] > raw[0] or after[1] > raw[1]:
            choice, level_map = "identity", LevelCalibration()
            after = _level_scores(cond, upper_fit, y, tt, level)
        maps.append(level_map)
        report[tt.tree.level_names[level]] = {
            "candidates": scores,
            "chosen": choice,
            "val_nll_before": raw[0],
            "val_ece_before": raw[1],
            "val_nll_after": after[0],
            "val_ece_after": after[1],
            # only when the levels above moved this level's marginal: reported, not hidden
            "worse_than_uncalibrated": bool(after[0] > raw[0] or after[1] > raw[1]),
        }
        upper_oof, upper_fit, upper_raw = oof[choice], after[2], raw[2]
    return maps, report
