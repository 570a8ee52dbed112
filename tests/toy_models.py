"""Tiny classifiers trained in seconds, for tests that need a real model to serve or promote."""

from __future__ import annotations

import numpy as np

from models.classifier import ClassifierConfig, fit_classifier
from models.classifier_io import TrainedClassifier
from models.gan import GanArchitecture
from models.hierarchy import Hierarchy


def train_tiny_classifier(
    tree: Hierarchy,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    info: dict | None = None,
    seed: int = 0,
) -> TrainedClassifier:
    """A small scratch-initialised hierarchical classifier; ``epochs=0`` leaves it untrained."""
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8, image_size=images.shape[1])
    config = ClassifierConfig(
        init="scratch",
        epochs=max(epochs, 1),
        batch_size=32,
        hidden=32,
        lr=5e-3 if epochs else 1e-9,
        augment=False,
        num_threads=1,
        freeze_epochs=0,
        seed=seed,
    )
    fit = fit_classifier(config, arch, tree, images, labels)
    return TrainedClassifier.from_model(fit.model, config, tree, dict(info or {}))
