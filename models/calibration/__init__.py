"""Calibration: probabilities that mean what they say, per tree level.

:func:`calibrate` chooses one map per level on the validation split among the strategies of
:mod:`.strategies` (temperature, vector, matrix, Dirichlet) and the identity, by cross-validated
NLL and ECE (:mod:`.select`), and reports NLL, ECE and classwise ECE before and after;
:mod:`.ece` holds the calibration errors (torchmetrics' 15-bin ECE, classwise ECE, per level) and
:mod:`.diagram` the reliability diagrams. Applying a map is :func:`models.tree.scale_logits`, the
one place it is written; the maps travel in the classifier artifact.
"""

from models.calibration.calibrate import Calibration, calibrate
from models.calibration.config import CalibrationConfig
from models.calibration.diagram import level_reliability_png, reliability_diagram_png
from models.calibration.ece import (
    classwise_ece,
    expected_calibration_error,
    level_classwise_ece,
    level_ece,
    reliability_bins,
)
from models.calibration.select import select_calibration
from models.calibration.strategies import STRATEGIES, fit_level_map
from models.calibration.temperature import fit_temperatures, level_nll

__all__ = [
    "STRATEGIES",
    "Calibration",
    "CalibrationConfig",
    "calibrate",
    "classwise_ece",
    "expected_calibration_error",
    "fit_level_map",
    "fit_temperatures",
    "level_classwise_ece",
    "level_ece",
    "level_nll",
    "level_reliability_png",
    "reliability_bins",
    "reliability_diagram_png",
    "select_calibration",
]
