"""L-infinity evasion attacks (FGSM, PGD, AutoAttack) on the merged hierarchical model, via ART.

The attacks come from the Adversarial Robustness Toolbox (``art.attacks.evasion``) rather than
torchattacks: torchattacks pins ``requests~=2.25``, which cannot be installed beside Evidently 0.7.

The attacked model is :class:`MergedLeafModel`: float NCHW images in [0, 1] (``eps`` is measured on
that scale), rescaled to the classifier's [-1, 1] inside, returning the merged leaf
log-probabilities ``log P(leaf)`` (per-level logits through the level's calibration map, conditional
softmax per sibling group, summed along each path, as :meth:`TrainedClassifier.leaf_probs`). The
attack maximises the leaf (fine) NLL; every level is then scored from the adversarial images.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.runtime.tensors import frozen
from models.tree.merge import LevelCalibration, TreeTensors, merged_log_probs

ATTACKS: tuple[str, ...] = ("fgsm", "pgd")
EVALUATION_ATTACKS: tuple[str, ...] = (*ATTACKS, "autoattack")


class MergedLeafModel(nn.Module):
    """``[B, C, H, W]`` in [0, 1] -> ``[B, n_leaves]`` merged leaf log-probabilities."""

    def __init__(
        self,
        classifier: nn.Module,
        tt: TreeTensors,
        calibration: Sequence[float | LevelCalibration] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.classifier = classifier
        self.tt = tt
        self.channels_last = channels_last
        maps = [1.0] * tt.depth if calibration is None else list(calibration)
        if len(maps) != tt.depth:
            raise ValueError(f"{len(maps)} calibration maps for a tree of depth {tt.depth}")
        self.calibration = maps

    def forward(self, x: Tensor) -> Tensor:
        """Leaf log-probabilities of images in [0, 1]."""
        x = x * 2.0 - 1.0  # the classifier's input range, as to_model_range(uint8)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return merged_log_probs(self.classifier(x), self.tt, self.calibration)


# ART backpropagates the whole graph: with the weights needing no gradient a 5-step PGD batch
# takes ~40 % less time on 2 cores (measured), so attacks run inside this.
input_gradients_only = frozen


@contextlib.contextmanager
def quiet_art() -> Iterator[None]:
    """Silence ART's per-call INFO lines ("Success rate of attack") while attacking."""
    art_logger = logging.getLogger("art")
    level = art_logger.level
    art_logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        art_logger.setLevel(level)


@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (ART draws PGD's random start from it), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def art_classifier(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    device: torch.device,
    nb_classes: int | None = None,
) -> Any:
    """ART's ``PyTorchClassifier`` on the merged model: NLL on log-probs, pixels clipped to [0, 1].

    Args:
        model: the merged model (its weights stay shared with the classifier), or another
            model of log-probabilities over ``nb_classes`` (a coarse level's marginal).
        input_shape: ``(C, H, W)``.
        device: where the model lives.
        nb_classes: the model's outputs; default the merged model's leaves.
    """
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=nn.NLLLoss(),
        input_shape=input_shape,
        nb_classes=model.tt.tree.num_leaves if nb_classes is None else nb_classes,
        clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu",
    )


def make_attack(
    estimator: Any,
    name: str,
    eps: float,
    steps: int = 10,
    step_ratio: float = 0.25,
    random_init: bool = True,
    batch_size: int = 256,
) -> Any:
    """An untargeted L-inf ART attack: ``fgsm`` (one signed step of size eps) or ``pgd``.

    Args:
        estimator: from :func:`art_classifier`.
        name: ``fgsm`` or ``pgd``.
        eps: radius on [0, 1] pixels.
        steps: PGD iterations.
        step_ratio: PGD step size as a fraction of ``eps``.
        random_init: PGD starts at a random point of the ball (Madry et al.).
        batch_size: images per gradient batch.
    """
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    if name == "fgsm":
        return FastGradientMethod(estimator, norm=np.inf, eps=eps, batch_size=batch_size)
    if name == "pgd":
        return ProjectedGradientDescent(
            estimator,
            norm=np.inf,
            eps=eps,
            eps_step=eps * step_ratio,
            max_iter=steps,
            num_random_init=1 if random_init else 0,
            batch_size=batch_size,
            verbose=False,
        )
    raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")


def make_autoattack(
    estimator: Any,
    eps: float,
    max_iter: int = 100,
    restarts: int = 1,
    square_queries: int = 5000,
    batch_size: int = 256,
) -> Any:
    """AutoAttack (Croce & Hein 2020) through ART: APGD-CE, APGD-DLR, then Square, L-inf.

    ART's ``AutoAttack`` runs each attack on the images that are still classified right and keeps
    the first adversarial example found within ``eps``. Its default list adds DeepFool (a
    minimal-perturbation attack, not an L-inf-ball attack) and 5 restarts of everything; this list
    is the parameter-free core of the standard version: APGD on the cross-entropy and on the
    difference-of-logits ratio (initial step 2 eps, as the paper), and the black-box Square
    attack, which does not rely on gradients (it catches gradient masking). The merged model
    returns log-probabilities: differences of them are differences of leaf logits, so DLR reads
    them as logits. A model of two classes (a two-node level's marginal) has no third logit for
    DLR: it gets APGD-CE and Square.

    Args:
        estimator: from :func:`art_classifier`.
        eps: radius on [0, 1] pixels.
        max_iter: APGD iterations.
        restarts: random restarts of each attack.
        square_queries: Square attack's query budget per image.
        batch_size: images per batch.
    """
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, SquareAttack

    def apgd(loss: str) -> Any:
        return AutoProjectedGradientDescent(
            estimator,
            norm=np.inf,
            eps=eps,
            eps_step=2 * eps,
            max_iter=max_iter,
            targeted=False,
            nb_random_init=restarts,
            batch_size=batch_size,
            loss_type=loss,
            verbose=False,
        )

    square = SquareAttack(
        estimator,
        norm=np.inf,
        eps=eps,
        max_iter=square_queries,
        p_init=0.8,
        nb_restarts=restarts,
        batch_size=batch_size,
        verbose=False,
    )
    attacks = [apgd("cross_entropy"), apgd("difference_logits_ratio"), square]
    if estimator.nb_classes < 3:  # DLR divides by the 1st minus the 3rd largest logit
        attacks.pop(1)
    return AutoAttack(
        estimator, norm=np.inf, eps=eps, eps_step=2 * eps, attacks=attacks, batch_size=batch_size
    )


def run_attack(
    attack: Any, model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int
) -> np.ndarray:
    """Adversarial images for float ``x`` ``[N, C, H, W]`` in [0, 1] with true leaves ``y``.

    Deterministic given ``seed``; the model's parameters get no gradient, its mode is restored.
    """
    was_training = model.training
    try:
        with input_gradients_only(model), numpy_seed(seed), quiet_art():
            return attack.generate(x=x.astype(np.float32, copy=False), y=y)
    finally:
        model.train(was_training)


@torch.no_grad()
def predict_leaf_log_probs(model: MergedLeafModel, x: np.ndarray, batch_size: int = 1024) -> Tensor:
    """``[N, n_leaves]`` leaf log-probabilities of float ``[N, C, H, W]`` images in [0, 1]."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [
        model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)).float()
        for i in range(0, len(x), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)
