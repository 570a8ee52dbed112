"""Tiny classifiers trained in seconds, and toy images they can learn, for tests that need a
real model to attack, serve or promote."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.training import fit_classifier
from models.gan.networks import GanArchitecture
from models.tree.hierarchy import Hierarchy, load_builtin_tree

TREE = load_builtin_tree("fashion-mnist")
ARCH = GanArchitecture(latent_dim=8, g_width=8, d_width=8)


def square_images(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose Fashion-MNIST leaf is where a bright square sits, over faint noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % TREE.num_leaves
    images = rng.integers(0, 40, size=(n, 28, 28, 1)).astype(np.uint8)
    for i, lab in enumerate(labels):
        r, c = 3 + 8 * (lab // 4), 2 + 6 * (lab % 4)
        images[i, r : r + 6, c : c + 6] = 230
    return images, labels


def tiny_config(**update: object) -> ClassifierConfig:
    """A scratch-initialised classifier config that trains in a second on one thread."""
    base = dict(
        init="scratch",
        epochs=3,
        batch_size=32,
        hidden=32,
        lr=5e-3,
        augment=False,
        num_threads=1,
        freeze_epochs=0,
    )
    return ClassifierConfig(**(base | update))


def square_classifier() -> TrainedClassifier:
    """A classifier trained on :func:`square_images`, with temperatures that are not all 1."""
    images, labels = square_images()
    config = tiny_config()
    fit = fit_classifier(config, ARCH, TREE, images, labels)
    model = TrainedClassifier.from_model(fit.model, config, TREE, {})
    model.temperatures = [1.2, 0.9, 1.1]
    return model


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


def random_logits(
    n: int, tree: Hierarchy = TREE, scale: float = 3.0, seed: int = 0
) -> list[torch.Tensor]:
    """Per-level logits drawn at random (no model), ``[n, n_l]`` each."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, s, generator=g) * scale for s in tree.level_sizes]


def make_miscalibrated(n: int = 4000, seed: int = 0):
    """Logits that are right most of the time but 4x overconfident."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, TREE.num_leaves, (n,), generator=g)
    level_labels = torch.from_numpy(TREE.all_level_labels(labels.numpy()))
    logits = []
    for level, size in enumerate(TREE.level_sizes):
        z = torch.randn(n, size, generator=g)
        z[torch.arange(n), level_labels[:, level]] += 1.5
        logits.append(z * 4.0)
    return logits, labels, level_labels


def encode_image(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    """``array`` encoded as an image file (PNG by default), converted to ``mode`` first if given."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(buf, format=fmt)
    return buf.getvalue()


def merged_model(model: TrainedClassifier) -> torch.nn.Module:
    """The calibrated classifier as the attacks see it (images in [0, 1] to leaf log-probs)."""
    from models.attacks.evasion import MergedLeafModel
    from models.tree.merge import TreeTensors

    return MergedLeafModel(model.build(), TreeTensors(model.tree), model.temperatures).eval()


def guarded_square_classifier(scorer: str = "knn_complexity", **ood: Any):
    """:func:`square_classifier` with a fitted OOD guard (random-init discriminator), and its
    validation scores: ``(classifier, guard, val_scores)``; ``ood``: other ``OodConfig`` fields."""
    from models.gan.networks import Discriminator
    from models.ood import OodConfig, fit_guard, with_guard

    classifier = square_classifier()
    train_x, train_y = square_images(400, seed=1)
    val_x, _ = square_images(200, seed=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        discriminator = Discriminator(ARCH).eval()
    config = OodConfig(scorer=scorer, fit_images=400, device="cpu", batch_size=64, **ood)
    guard, val = fit_guard(classifier, discriminator, train_x, train_y, val_x, config)
    return with_guard(classifier, guard), guard, val
