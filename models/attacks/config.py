"""Adversarial training's settings (``classifier.adversarial:`` in the YAML), for every attack."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AdversarialTrainingConfig(BaseModel):
    """Adversarial training (``classifier.adversarial:`` in the YAML): Madry PGD or TRADES.

    ``epochs`` adversarial epochs run after the clean schedule, with their own cosine
    learning-rate cycle, so the clean part of the run is exactly the run without this section;
    with ``from_start`` the clean schedule's batches are attacked too (training from scratch or
    from the GAN's trunk adversarially, as Madry et al.), and ``epochs`` may be 0.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["pgd", "trades"] = Field(
        "pgd", description="pgd: train on PGD examples (Madry); trades: TRADES' loss (Zhang)"
    )
    backend: Literal["art", "torch"] = Field(
        "art",
        description="pgd's attack: ART's PGD, or the in-process loop TRADES uses (no numpy round "
        "trip a step: measured ~5x faster a step on a GPU, about equal on 2 CPU cores)",
    )
    beta: float = Field(6.0, ge=0, description="TRADES: weight of the KL robustness term")
    from_start: bool = Field(False, description="attack the clean schedule's batches as well")
    epochs: int = Field(3, ge=0, description="adversarial epochs appended after the clean ones")
    eps: float = Field(0.1, gt=0, le=1, description="L-inf radius on [0, 1] pixels")
    steps: int = Field(5, ge=1, description="PGD iterations per training batch")
    step_ratio: float = Field(0.5, gt=0, le=1, description="PGD step size = step_ratio * eps")
    random_init: bool = Field(True, description="PGD starts from a random point of the ball")
    fraction: float = Field(
        1.0, gt=0, le=1, description="share of each batch replaced by adversarial examples"
    )
    lr_scale: float = Field(
        0.25, gt=0, description="peak learning rate of the fine-tuning cycle = lr * lr_scale"
    )
