"""PGD adversarial training (Madry et al. 2018) as a batch perturbation of the classifier's loop.

:class:`PGDPerturbation` replaces a share of each (already augmented) training batch by ART PGD
examples against the merged leaf prediction (uncalibrated: temperatures are fitted after
training); the loop then minimises its usual conditional loss over all levels.
:func:`models.classifier.training.fit_classifier` appends such a phase after the clean epochs
when ``ClassifierConfig.adversarial`` is set.

ART's per-batch numpy round trip was measured before choosing it over an in-house PGD loop: a
5-step PGD batch of 128 Fashion-MNIST images costs ~0.31 s through ART against ~0.25 s for a
bare torch loop on 2 cores. On a GPU the round trip and ART's bookkeeping dominate: a 7-step
training step of the GPU profile's network took 253 ms through ART against 51 ms for TRADES'
torch loop (one H200 shared by four jobs), so ``backend: torch`` runs PGD in that loop
(:func:`models.attacks.trades.pgd_adversarial_examples`); evaluation keeps ART's attacks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from models.attacks.config import AdversarialTrainingConfig
from models.attacks.evasion import MergedLeafModel, art_classifier, make_attack, run_attack
from models.attacks.trades import pgd_adversarial_examples
from models.tree.merge import TreeTensors


class PGDPerturbation:
    """Swap the first ``fraction`` of a batch for PGD examples against the model being trained.

    Args:
        model: the classifier (per-level logits of images in [-1, 1]); weights stay shared.
        tt: the tree's tensors on the model's device.
        config: radius, steps, step size, random start and share of the batch.
        input_shape: ``(C, H, W)``.
        batch_size: the training batch size (ART's gradient batch).
        seed: the run's seed; step ``s`` draws PGD's random start from ``seed * 1_000_003 + s``.
        channels_last: the model's memory format.
    """

    def __init__(
        self,
        model: nn.Module,
        tt: TreeTensors,
        config: AdversarialTrainingConfig,
        input_shape: tuple[int, int, int],
        batch_size: int,
        seed: int,
        channels_last: bool = False,
    ) -> None:
        device = next(model.parameters()).device
        self.config = config
        self.seed = seed
        self.model, self.tt, self.channels_last = model, tt, channels_last
        self.merged = MergedLeafModel(model, tt, channels_last=channels_last)
        if config.backend == "torch":
            return  # the torch loop needs no ART estimator
        self.attack = make_attack(
            art_classifier(self.merged, input_shape, device),
            "pgd",
            config.eps,
            steps=config.steps,
            step_ratio=config.step_ratio,
            random_init=config.random_init,
            batch_size=batch_size,
        )

    def __call__(self, x: Tensor, level_labels: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """``x`` in [-1, 1] ``[B, C, H, W]`` with its first images replaced by PGD examples."""
        k = max(1, round(self.config.fraction * len(x)))
        if self.config.backend == "torch":
            seed = self.seed * 1_000_003 + step
            generator = torch.Generator(device=x.device).manual_seed(seed)
            adv_t = pgd_adversarial_examples(
                self.model,
                self.tt,
                x[:k],
                level_labels[:k, -1],
                self.config,
                generator,
                self.channels_last,
            )
            return torch.cat([adv_t, x[k:]]), level_labels
        x01 = ((x[:k] + 1.0) / 2.0).clamp_(0.0, 1.0).cpu().numpy()
        leaves = level_labels[:k, -1].cpu().numpy()  # leaf-level node index = leaf label
        adv = run_attack(self.attack, self.merged, x01, leaves, seed=self.seed * 1_000_003 + step)
        adv_t = torch.from_numpy(np.asarray(adv)).to(x.device) * 2.0 - 1.0
        return torch.cat([adv_t, x[k:]]), level_labels
