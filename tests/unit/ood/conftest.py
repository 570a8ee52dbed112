"""A tiny classifier with a fitted guard, shared by the OOD tests (trained once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.toy_models import guarded_square_classifier


@pytest.fixture(scope="session")
def toy_guarded():
    """``(classifier with guard, guard, val scores)`` on the square toy data."""
    return guarded_square_classifier()


@pytest.fixture
def noise_images() -> np.ndarray:
    """Uniform noise, far from the toy data."""
    return np.random.default_rng(3).integers(0, 256, (100, 28, 28, 1), dtype=np.uint8)
