"""The served neck components in NumPy give the torch components' numbers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from models.ood.guard import OodGuard
from models.ood.scores import guarded_forward
from models.ood.served_neck import ServedNeckScores
from models.runtime.tensors import to_model_range
from models.tree.merge import TreeTensors
from tests.toy_models import square_images


def _neck_and_components(classifier, guard: OodGuard, images: np.ndarray, parts: list[str]):
    model = classifier.build()
    x = to_model_range(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.inference_mode():
        out = guarded_forward(model, None, x, need_trunk=False)
        probs = torch.softmax(torch.zeros(len(images), classifier.tree.num_leaves), 1)
        comps = guard.components(out, TreeTensors(classifier.tree, "cpu"), probs, parts)
    return out.layers["neck"].float().numpy(), {k: v.numpy() for k, v in comps.items()}


@pytest.mark.parametrize("coarse", [True, False])
def test_numpy_neck_components_match_the_torch_ones(toy_guarded, noise_images, coarse) -> None:
    classifier, fitted, _ = toy_guarded
    guard = copy.deepcopy(fitted)
    if coarse:
        guard.use_coarse_search()  # the served two-stage kNN search
    levels = guard.levels
    parts = ["knn", *(f"rmd_neck_{lv}" for lv in levels), *(f"maha_neck_{lv}" for lv in levels)]
    assert ServedNeckScores.serves(guard, parts)
    images = np.concatenate([square_images(30, seed=9)[0], noise_images[:30]])
    neck, expected = _neck_and_components(classifier, guard, images, parts)
    served = ServedNeckScores(guard, parts)(neck)
    assert set(served) == set(parts)
    # float32 rounding: of a cosine near 1 for kNN; otherwise of each image's distances, whose
    # expansion z'Pz - 2m'Pz + m'Pm cancels terms larger than they are (and a relative
    # Mahalanobis distance is the difference of two of them)
    background = expected["maha_neck_background"]
    for part in parts:
        if part == "knn":
            atol: float | np.ndarray = 8 * 2.0**-24
        else:
            atol = 1e-4 * (expected[f"maha_neck_{part.split('_', 2)[2]}"] + background) + 1e-3
        assert (np.abs(served[part] - expected[part]) <= atol).all(), part
    # the kNN distance alone, and a Mahalanobis alone, need no other block
    alone = ServedNeckScores(guard, ["knn"])(neck)["knn"]
    np.testing.assert_allclose(alone, expected["knn"], rtol=1e-4, atol=1e-5)


def test_only_neck_components_of_the_guard_are_served(toy_guarded) -> None:
    _, guard, _ = toy_guarded
    leaf = guard.levels[-1]
    assert not ServedNeckScores.serves(guard, [f"maha_trunk_{leaf}"])
    assert not ServedNeckScores.serves(guard, ["knn", "complexity"])
    assert not ServedNeckScores.serves(guard, ["msp"])
    assert not ServedNeckScores.serves(guard, ["maha_neck_nolevel"])
    assert not ServedNeckScores.serves(guard, [])
    without_bank = copy.copy(guard)
    without_bank.neighbours = None
    assert not ServedNeckScores.serves(without_bank, ["knn"])
    with pytest.raises(ValueError, match="not neck components"):
        ServedNeckScores(guard, ["energy"])
