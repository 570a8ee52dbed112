"""Calibration: probabilities that mean what they say, per tree level.

:func:`calibrate` fits one temperature per level on the validation split (:mod:`.temperature`)
and reports NLL and ECE before and after; :mod:`.ece` holds the calibration error (torchmetrics'
15-bin ECE, per level) and :mod:`.diagram` the reliability diagram. Applying temperatures is
:func:`models.tree.scale_logits`, the one place it is written.
"""

from models.calibration.calibrate import Calibration, calibrate
from models.calibration.diagram import reliability_diagram_png
from models.calibration.ece import expected_calibration_error, level_ece, reliability_bins
from models.calibration.temperature import fit_temperatures, level_nll

__all__ = [
    "Calibration",
    "calibrate",
    "expected_calibration_error",
    "fit_temperatures",
    "level_ece",
    "level_nll",
    "reliability_bins",
    "reliability_diagram_png",
]
