"""The guard-on-each-device bench's sets file: built where the libraries are, scored elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.guard_devices import load_sets, save_sets


def test_sets_file_round_trips_images_and_the_sets_left_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sets = {
        "noise": rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8),
        "flat": np.full((3, 28, 28, 1), 7, np.uint8),
    }
    path = tmp_path / "sub" / "sets.npz"
    save_sets(path, sets, {"digits": "sklearn is not installed"})
    loaded, missing = load_sets(path)
    assert list(loaded) == ["noise", "flat"]
    for name, images in sets.items():
        np.testing.assert_array_equal(loaded[name], images)
    assert missing == {"digits": "sklearn is not installed"}


def test_sets_file_with_a_wrong_array_names_it(tmp_path: Path) -> None:
    path = tmp_path / "sets.npz"
    np.savez(path, noise=np.zeros((2, 28, 28), np.float32))
    with pytest.raises(SystemExit, match=r"noise float32 \(2, 28, 28\)"):
        load_sets(path)
