"""How the classifier holds up: attacks and corruptions per level, explanations, and a gate.

:func:`evaluate_robustness` scores every tree level under FGSM/PGD (through
:mod:`models.attacks`) and a 14 x 5 corruption grid, with graceful degradation (coarse level
right when the leaf is wrong), Integrated Gradients maps and nearest neighbours
(:mod:`.saliency`); :mod:`.report` turns the numbers into tables and curves; :func:`check_gate`
enforces the configured bound.
"""

from models.robustness.config import (
    FINE,
    RobustnessConfig,
    RobustnessGate,
    RobustnessGateError,
    check_gate,
    level_keys,
    own_loss_key,
    robust_key,
)
from models.robustness.evaluate import RobustnessResult, evaluate_robustness
from models.robustness.scores import level_scores, stratified_subset

__all__ = [
    "FINE",
    "RobustnessConfig",
    "RobustnessGate",
    "RobustnessGateError",
    "RobustnessResult",
    "check_gate",
    "evaluate_robustness",
    "level_keys",
    "level_scores",
    "own_loss_key",
    "robust_key",
    "stratified_subset",
]
