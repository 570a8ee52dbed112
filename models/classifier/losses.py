"""The classifier's batch losses: the per-level conditional NLL, and TRADES on top of it.

A loss is called with the network, the (perturbed) batch and its labels, so that a loss that
needs more than one forward pass (TRADES: the clean batch and an adversarial one) plugs into the
one training loop (:class:`~models.classifier.training.Phase` ``loss``) without a second loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from models.attacks.config import AdversarialTrainingConfig
from models.attacks.trades import kl_adversarial_examples, leaf_kl
from models.tree.merge import TreeTensors, conditional_log_probs


class BatchLoss(Protocol):
    """The training objective of one batch."""

    def __call__(self, model: nn.Module, x: Tensor, level_labels: Tensor, step: int) -> Tensor:
        """Scalar loss of ``model`` on ``x`` ``[B, C, H, W]`` (model range) and ``[B, depth]``."""
        ...


def conditional_nll(
    logits: list[Tensor],
    level_labels: Tensor,
    tt: TreeTensors,
    weights: Sequence[float],
    smoothing: float = 0.0,
) -> Tensor:
    """Weighted sum over levels of ``-log P(true node | true parent)``, batch-averaged.

    With ``smoothing`` ε, each level's target puts ``1 - ε`` on the true node and spreads ε
    evenly over the true node's siblings (itself included): label smoothing (Szegedy et al. 2016)
    inside each sibling group, where the conditional softmax lives.
    """
    cond = conditional_log_probs(logits, tt)
    loss = logits[0].new_zeros(())
    for level, (c, w) in enumerate(zip(cond, weights, strict=True)):
        true = level_labels[:, level : level + 1]
        nll = -c.gather(1, true).squeeze(1)
        if smoothing > 0:
            parent = tt.parents[level][true.squeeze(1)]  # the true node's parent, per row
            siblings = tt.sibling_masks[level][parent]  # [B, n_l]
            spread = -(c.masked_fill(~siblings, 0.0)).sum(1) / siblings.sum(1)
            nll = (1 - smoothing) * nll + smoothing * spread
        loss = loss + w * nll.mean()
    return loss


class HierarchicalNLL:
    """The default objective: :func:`conditional_nll` of the network's per-level logits."""

    def __init__(self, tt: TreeTensors, weights: Sequence[float], smoothing: float = 0.0) -> None:
        self.tt, self.weights, self.smoothing = tt, list(weights), smoothing

    def __call__(self, model: nn.Module, x: Tensor, level_labels: Tensor, step: int) -> Tensor:
        """Conditional NLL of ``model(x)``."""
        return conditional_nll(model(x), level_labels, self.tt, self.weights, self.smoothing)


class TradesLoss:
    """TRADES (Zhang et al. 2019): natural loss + β · KL(P(leaf | x) || P(leaf | x_adv)).

    ``x_adv`` maximises that KL inside the L-inf ball (PGD from a small random start, the model
    in eval mode as in the authors' code); the KL is over the merged leaf distribution, which is
    the distribution over whole paths of the tree. The natural term is :class:`HierarchicalNLL`.
    """

    def __init__(
        self,
        natural: HierarchicalNLL,
        config: AdversarialTrainingConfig,
        seed: int,
        channels_last: bool,
    ) -> None:
        self.natural, self.config = natural, config
        self.seed, self.channels_last = seed, channels_last

    def __call__(self, model: nn.Module, x: Tensor, level_labels: Tensor, step: int) -> Tensor:
        """TRADES loss of one batch (generates the adversarial batch first)."""
        tt = self.natural.tt
        generator = torch.Generator(device=x.device).manual_seed(self.seed * 1_000_003 + step)
        x_adv = kl_adversarial_examples(model, tt, x, self.config, generator, self.channels_last)
        # two passes, as the authors' code: batch norm sees clean and adversarial batches apart
        clean, adv = model(x), model(x_adv)
        natural = conditional_nll(
            clean, level_labels, tt, self.natural.weights, self.natural.smoothing
        )
        return natural + self.config.beta * leaf_kl(clean, adv, tt)
