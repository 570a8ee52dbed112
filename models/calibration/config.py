"""How the classifier is calibrated (``calibration:`` in the train YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.calibration.strategies import STRATEGIES

# STRATEGIES spelled out for validation (a unit test holds the two together)
Strategy = Literal["temperature", "vector", "matrix", "dirichlet"]


class CalibrationConfig(BaseModel):
    """The candidate maps compared per level on the validation split, and how.

    The identity is always a candidate: a level keeps it unless a map is no worse by
    cross-validated NLL and ECE (:func:`models.calibration.select.select_calibration`).
    """

    model_config = ConfigDict(extra="forbid")

    strategies: list[Strategy] = Field(
        default_factory=lambda: list(STRATEGIES),
        min_length=1,
        description="maps compared besides the identity",
    )
    folds: int = Field(5, ge=2, le=20, description="cross-validation folds on the val split")
    max_iter: int = Field(200, ge=10, description="L-BFGS iterations per fit")
    activation_range_images: int = Field(
        2048,
        ge=0,
        description="val images the int8 runtime's activation ranges are fitted on "
        "(serving's quantization: static-int8); 0: none fitted",
    )
