"""A phase of classifier training: epochs with one learning-rate cycle, perturbations and a loss.

:class:`~models.classifier.training.ClassifierTrainer` runs phases; a new way of changing batches
is a :class:`Perturbation`, a new objective a :class:`~models.classifier.losses.BatchLoss`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor

from models.classifier.losses import BatchLoss


class Perturbation(Protocol):
    """Changes a training batch before the loss: augmentation, adversarial examples, ..."""

    def __call__(self, x: Tensor, level_labels: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The batch to train on.

        ``x`` is ``[B, C, H, W]`` in [-1, 1], ``level_labels`` ``[B, depth]``, ``step`` counts
        the phase's steps from 0.
        """
        ...


@dataclass
class Phase:
    """Epochs with one cosine learning-rate cycle and one chain of batch perturbations.

    Attributes:
        name: for logs.
        epochs: how many.
        lr_scale: the cycle's peak, relative to each parameter group's base rate.
        frozen_epochs: leading epochs that train only the heads (trunk frozen, its batch-norm
            statistics kept).
        perturbations: applied in order to every batch.
        loss: the batch objective; None: the trainer's conditional NLL.
        warmup_epochs: linear warm-up of the learning rate before the cosine decay.
        tags: constant entries of every epoch's metrics (e.g. ``{"adversarial": 1.0}``).
    """

    name: str
    epochs: int
    lr_scale: float = 1.0
    frozen_epochs: int = 0
    perturbations: Sequence[Perturbation] = ()
    loss: BatchLoss | None = None
    warmup_epochs: float = 0.0
    tags: dict[str, float] = field(default_factory=dict)

    def lr_factor(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The learning-rate multiplier at ``step``: linear warm-up, then a cosine to zero."""
        warm = min(round(self.warmup_epochs * steps_per_epoch), total_steps - 1)
        if step < warm:
            return self.lr_scale * (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return self.lr_scale * 0.5 * (1 + math.cos(math.pi * progress))
