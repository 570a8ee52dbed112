"""The serving path's NumPy merge gives the torch merge's probabilities for every calibration."""

import numpy as np
import pytest
import torch

from models.tree.hierarchy import load_builtin_tree
from models.tree.merge import METHODS, LevelCalibration, TreeTensors, merged_log_probs
from models.tree.numpy_merge import NumpyMerge
from tests.toy_models import random_logits


def level_map(method: str, size: int, rng: np.random.Generator) -> LevelCalibration:
    """A random map of ``method`` for a level of ``size`` nodes."""
    weight = {
        "identity": (),
        "temperature": (float(rng.uniform(0.5, 2.0)),),
        "vector": tuple(rng.uniform(0.5, 2.0, size).tolist()),
    }.get(method, tuple(map(tuple, rng.normal(0, 0.5, (size, size)).tolist())))
    bias = () if method in ("identity", "temperature") else tuple(rng.normal(0, 1, size).tolist())
    return LevelCalibration(method, weight, bias)


@pytest.mark.parametrize("tree_name", ["fashion-mnist", "cifar100"])
@pytest.mark.parametrize("method", METHODS)
def test_numpy_merge_equals_the_torch_merge(tree_name: str, method: str) -> None:
    tree = load_builtin_tree(tree_name)
    rng = np.random.default_rng(0)
    maps = [level_map(method, size, rng) for size in tree.level_sizes]
    logits = [z * 4 for z in random_logits(33, tree)]  # some far from the others
    tt = TreeTensors(tree)
    expected = merged_log_probs(logits, tt, maps).exp().numpy()
    probs = NumpyMerge(tree, maps).leaf_probs([z.numpy() for z in logits])
    assert probs.dtype == np.float32 and probs.shape == expected.shape
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_temperatures_as_numbers_and_no_calibration() -> None:
    tree = load_builtin_tree("fashion-mnist")
    logits = random_logits(8, tree)
    tt = TreeTensors(tree)
    for maps in ([1.5, 0.8, 1.2], None):
        expected = merged_log_probs(logits, tt, maps).exp().numpy()
        got = NumpyMerge(tree, maps).leaf_probs([z.numpy() for z in logits])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_one_map_per_level_or_an_error() -> None:
    with pytest.raises(ValueError, match="2 calibration maps for 3 levels"):
        NumpyMerge(load_builtin_tree("fashion-mnist"), [1.0, 1.0])


def test_a_group_far_below_the_others_keeps_its_conditionals() -> None:
    tree = load_builtin_tree("fashion-mnist")
    logits = [torch.zeros(1, n) for n in tree.level_sizes]
    logits[-1][0, :] = -200.0  # every leaf logit far below: the per-group maximum keeps them
    logits[-1][0, 0] = -199.0
    probs = NumpyMerge(tree).leaf_probs([z.numpy() for z in logits])
    expected = merged_log_probs(logits, TreeTensors(tree)).exp().numpy()
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
