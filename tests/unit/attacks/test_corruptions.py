"""The corruption grid: deterministic, shape- and range-preserving, growing with severity."""

from __future__ import annotations

import numpy as np
import pytest

from models.attacks.corruptions import CORRUPTIONS, corrupt
from tests.toy_models import square_images


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_are_deterministic_and_keep_shape_and_range(name: str) -> None:
    images, _ = square_images(24, seed=4)
    for severity in (1, 3, 5):
        out = corrupt(images, name, severity, seed=0)
        assert out.shape == images.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, corrupt(images, name, severity, seed=0))
        assert not np.array_equal(out, images), f"{name} at severity {severity} changed nothing"
    np.testing.assert_array_equal(corrupt(images, name, 0, seed=0), images)


def test_corruption_severity_grows_the_change() -> None:
    images, _ = square_images(24, seed=5)
    for name in ("gaussian_noise", "gaussian_blur", "contrast", "rotation"):
        change = [np.abs(corrupt(images, name, s).astype(int) - images).mean() for s in (1, 3, 5)]
        assert change[0] < change[1] < change[2], (name, change)


def test_noise_depends_on_the_seed_and_rgb_images_work() -> None:
    images, _ = square_images(8, seed=6)
    assert not np.array_equal(
        corrupt(images, "gaussian_noise", 2, seed=0), corrupt(images, "gaussian_noise", 2, seed=1)
    )
    rgb = np.repeat(images, 3, axis=-1)
    for name in CORRUPTIONS:
        assert corrupt(rgb, name, 2).shape == rgb.shape


def test_bad_corruption_inputs_are_named() -> None:
    images, _ = square_images(4)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severities must be in"):
        corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="expects uint8"):
        corrupt(images.astype(np.float32), "contrast", 1)
