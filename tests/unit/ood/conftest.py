"""A tiny classifier with a fitted guard, shared by the OOD tests (trained once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from models.gan.networks import Discriminator
from models.ood import OodConfig, fit_guard, with_guard
from tests.toy_models import ARCH, square_classifier, square_images


@pytest.fixture(scope="session")
def toy_guarded():
    """``(classifier with guard, guard, val images)`` on the square toy data, every component."""
    import torch

    torch.set_num_threads(1)
    classifier = square_classifier()
    train_x, train_y = square_images(400, seed=1)
    val_x, _ = square_images(200, seed=2)
    torch.manual_seed(0)
    discriminator = Discriminator(ARCH).eval()
    config = OodConfig(scorer="combined", fit_images=400, device="cpu", batch_size=64)
    guard, val = fit_guard(classifier, discriminator, train_x, train_y, val_x, config)
    return with_guard(classifier, guard), guard, val_x, val


@pytest.fixture
def noise_images() -> np.ndarray:
    """Uniform noise, far from the toy data."""
    return np.random.default_rng(3).integers(0, 256, (100, 28, 28, 1), dtype=np.uint8)
