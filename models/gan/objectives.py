"""GAN training objectives: what the discriminator and the generator minimise in each mode.

An objective sees the networks and one step's batches and returns losses; the training loop
does everything else (devices, precision, optimisers, checkpoints). A new mode, such as a
Triple-GAN-style one where a classifier generates labels and the discriminator judges
(image, label) pairs, is one more class with these two methods in ``OBJECTIVES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch.nn.functional as F
from torch import Tensor

from models.gan.losses import LOSSES, FeatureMatching, real_fake_logit
from models.gan.networks import Discriminator


@dataclass
class StepBatch:
    """What one training step sees.

    Attributes:
        real: ``[B, C, H, W]`` real images in [-1, 1] (labels never attached).
        fake: ``[B, C, H, W]`` generator output for this step.
        labelled: ``[B_l, C, H, W]`` images whose labels may be used, or None.
        labels: ``[B_l]`` their class indices, or None.
    """

    real: Tensor
    fake: Tensor
    labelled: Tensor | None = None
    labels: Tensor | None = None


class GanObjective(Protocol):
    """The losses of one GAN mode."""

    needs_labels: bool

    def discriminator_loss(
        self, d: Discriminator, batch: StepBatch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss to minimise w.r.t. D (fakes are detached by the caller), and logged terms."""
        ...

    def generator_loss(
        self, d: Discriminator, batch: StepBatch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss to minimise w.r.t. G, and logged terms."""
        ...


class Unsupervised:
    """Plain adversarial training with a one-logit discriminator (DCGAN family)."""

    needs_labels = False

    def __init__(self, loss: str = "bce") -> None:
        if loss not in ("bce", "hinge"):
            raise ValueError(f"unsupervised loss must be 'bce' or 'hinge', got {loss!r}")
        self.loss = LOSSES[loss]()

    def discriminator_loss(
        self, d: Discriminator, batch: StepBatch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``loss(D(real), D(fake))``."""
        pred_real, pred_fake = d(batch.real), d(batch.fake)
        loss = self.loss(pred_real, pred_fake)
        return loss, {"d_loss": loss, "d_real": pred_real.mean(), "d_fake": pred_fake.mean()}

    def generator_loss(
        self, d: Discriminator, batch: StepBatch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``loss(D(fake))``: the generator wants its images judged real."""
        loss = self.loss(d(batch.fake))
        return loss, {"g_loss": loss}


class SemiSupervised:
    """Salimans et al. (2016): a K+1-way discriminator and a feature-matching generator.

    D's K logits classify real images; the fake class has a fixed logit of 0, so the real/fake
    logit is ``logsumexp`` of the K logits (:func:`models.gan.losses.real_fake_logit`). D minimises
    cross-entropy on the labelled batch plus the binary GAN loss on real/fake; G matches the mean
    pooled trunk features of real images.
    """

    needs_labels = True

    def __init__(self, loss: str = "bce", unsupervised_weight: float = 1.0) -> None:
        if loss != "bce":
            raise ValueError("semi-supervised mode uses the 'bce' loss on the K+1-way output")
        self.loss = LOSSES["bce"]()
        self.feature_matching = FeatureMatching()
        self.unsupervised_weight = unsupervised_weight

    def discriminator_loss(
        self, d: Discriminator, batch: StepBatch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy on the labelled batch + real/fake loss on the unlabelled and fake ones."""
        if batch.labelled is None or batch.labels is None:
            raise ValueError("semi-supervised mode needs a labelled batch")
        supervised = F.cross_entropy(d(batch.labelled), batch.labels)
        real_logit = real_fake_logit(d(batch.real))
        fake_logit = real_fake_logit(d(batch.fake))
        unsupervised = self.loss(real_logit, fake_logit)
        loss = supervised + self.unsupervised_weight * unsupervised
        return loss, {
            "d_loss": loss,
            "d_supervised": supervised,
            "d_unsupervised": unsupervised,
            "d_real": real_logit.mean(),
            "d_fake": fake_logit.mean(),
        }

    def generator_loss(
        self, d: Discriminator, batch: StepBatch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Feature matching on D's pooled trunk features."""
        loss = self.feature_matching(d.features(batch.real), d.features(batch.fake))
        return loss, {"g_loss": loss}


OBJECTIVES = {"unsupervised": Unsupervised, "semi-supervised": SemiSupervised}


def build_objective(mode: str, loss: str) -> GanObjective:
    """The objective registered for ``mode``."""
    if mode not in OBJECTIVES:
        raise ValueError(f"unknown GAN mode {mode!r}; known: {sorted(OBJECTIVES)}")
    return OBJECTIVES[mode](loss)
