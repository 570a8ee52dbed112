"""The offline OOD sets."""

from __future__ import annotations

import numpy as np

from models.ood import sets as ood_sets
from models.ood.sets import SETS, build_ood_sets


def test_every_set_has_the_reference_shape_and_is_reproducible() -> None:
    reference = np.random.default_rng(0).integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    a, missing = build_ood_sets(reference, n=20, seed=1)
    b, _ = build_ood_sets(reference, n=20, seed=1)
    assert set(a) | set(missing) == set(SETS)
    for name, images in a.items():
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28, 1), name
        assert 0 < len(images) <= 20
        np.testing.assert_array_equal(images, b[name])
    negatives = {(255 - r).tobytes() for r in reference}
    assert all(img.tobytes() in negatives for img in a["inverted"])


def test_three_channel_models_get_three_channel_sets() -> None:
    reference = np.zeros((10, 32, 32, 3), np.uint8)
    sets, _ = build_ood_sets(reference, n=5, names=("noise", "glyphs"))
    assert sets["noise"].shape == (5, 32, 32, 3) and sets["glyphs"].shape == (5, 32, 32, 3)


def test_a_set_whose_package_is_missing_is_left_out_with_the_reason(monkeypatch) -> None:
    def missing(*args: object) -> np.ndarray:
        raise ModuleNotFoundError("No module named 'skimage'", name="skimage")

    monkeypatch.setitem(ood_sets.BUILDERS, "photos", missing)
    sets, why = build_ood_sets(np.zeros((4, 28, 28, 1), np.uint8), n=3, names=("photos", "flat"))
    assert "photos" not in sets and why == {"photos": "skimage is not installed"}
    assert sets["flat"].shape == (3, 28, 28, 1)
