"""GAN losses as small modules with one signature, ``loss(pred_real, pred_fake=None)``.

With both arguments a loss is the discriminator's; with only the first it is the generator's
(the first argument is then the discriminator's output on fakes, which the generator wants to be
judged real), as in pytorch-gan-collections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BCEWithLogits(nn.Module):
    """The original GAN loss (non-saturating for the generator), on logits."""

    def forward(self, pred_real: Tensor, pred_fake: Tensor | None = None) -> Tensor:
        """Discriminator loss with two arguments, generator loss with one."""
        if pred_fake is None:
            return F.binary_cross_entropy_with_logits(pred_real, torch.ones_like(pred_real))
        return F.binary_cross_entropy_with_logits(
            pred_real, torch.ones_like(pred_real)
        ) + F.binary_cross_entropy_with_logits(pred_fake, torch.zeros_like(pred_fake))


class Hinge(nn.Module):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018), the usual partner of spectral norm."""

    def forward(self, pred_real: Tensor, pred_fake: Tensor | None = None) -> Tensor:
        """Discriminator loss with two arguments, generator loss with one."""
        if pred_fake is None:
            return -pred_real.mean()
        return F.relu(1.0 - pred_real).mean() + F.relu(1.0 + pred_fake).mean()


class FeatureMatching(nn.Module):
    """Generator loss of Salimans et al. (2016): match the mean discriminator features.

    ``pred_real``/``pred_fake`` are the discriminator's intermediate features ``[B, F]``; the
    real statistics are a target, so no gradient flows into them.
    """

    def forward(self, pred_real: Tensor, pred_fake: Tensor | None = None) -> Tensor:
        """Squared distance between the batch means of real and fake features."""
        if pred_fake is None:
            raise ValueError("feature matching needs real and fake features")
        return F.mse_loss(pred_fake.mean(0), pred_real.detach().mean(0))


LOSSES: dict[str, type[nn.Module]] = {
    "bce": BCEWithLogits,
    "hinge": Hinge,
    "feature_matching": FeatureMatching,
}


def real_fake_logit(class_logits: Tensor) -> Tensor:
    """Real-vs-fake logit of a K-way classifier read as K+1-way with a fixed fake logit of 0.

    Salimans et al. (2016): D(x) = Z(x) / (Z(x) + 1) with Z(x) = sum_k exp(l_k(x)), so
    logit D(x) = logsumexp_k l_k(x). Fixing the (K+1)-th logit at 0 loses nothing, since softmax
    is invariant to a shift, and lets the binary GAN losses above work unchanged.
    """
    return torch.logsumexp(class_logits, dim=1)
