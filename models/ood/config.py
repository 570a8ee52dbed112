"""How the out-of-distribution guard is fitted (``ood:`` in the train YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scorer = Literal["msp", "energy", "mahalanobis", "realness", "combined"]
SCORERS: tuple[str, ...] = ("msp", "energy", "mahalanobis", "realness", "combined")


class OodConfig(BaseModel):
    """Which scorer the served guard uses, and what it is fitted on.

    Every scorer is computed from the same forward pass (:func:`models.ood.scores.guarded_forward`);
    ``scorer`` picks the one whose threshold is served. The threshold is the ``tpr`` quantile of
    the validation split's scores: that share of in-distribution images passes.
    """

    model_config = ConfigDict(extra="forbid")

    scorer: Scorer = Field("combined", description="the served score (higher = more unusual)")
    tpr: float = Field(0.95, gt=0.5, lt=1, description="in-distribution share under threshold")
    fit_images: int = Field(
        20000, ge=20, description="train images the class-conditional Gaussians are fitted on"
    )
    shrinkage: float = Field(
        1e-3, ge=0, lt=1, description="covariance + shrinkage * mean variance * identity"
    )
    batch_size: int = Field(512, ge=1)
    device: str = Field("auto", description="cpu, cuda or auto")
    seed: int = 0
