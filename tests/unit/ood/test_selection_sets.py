"""The scorer-selection bench's drawn OOD sets: what a user could send, none of the bench's."""

from __future__ import annotations

import numpy as np

from bench.ood_selection import DRAWN, drawn_sets, selection_splits


def test_drawn_sets_are_images_of_the_served_shape_and_repeatable() -> None:
    sets = drawn_sets(6, seed=3)
    assert set(sets) == set(DRAWN)
    for name, images in sets.items():
        assert images.shape == (6, 28, 28, 1) and images.dtype == np.uint8, name
        assert images.max() >= 100, name  # something is drawn
        assert len({img.tobytes() for img in images}) == 6, name  # every image its own
        np.testing.assert_array_equal(images, drawn_sets(6, seed=3)[name])
    assert not np.array_equal(sets["shapes"], drawn_sets(6, seed=4)["shapes"])


def test_selection_splits_keep_the_test_split_out() -> None:
    x, y = np.arange(10)[:, None], np.arange(10)
    splits = selection_splits({"train": (x, y), "val": (x, y)})
    assert splits["train"][0] is x
    np.testing.assert_array_equal(splits["val"][1], np.arange(5))
    np.testing.assert_array_equal(splits["test"][1], np.arange(5, 10))
