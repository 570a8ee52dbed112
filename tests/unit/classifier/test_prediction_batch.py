"""The batched serving path: one forward pass, answers vectorised over the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.classifier.prediction import Predictor
from models.tree.merge import TreeTensors, node_probs
from tests.toy_models import square_images


@pytest.fixture(scope="module")
def predictor(square_classifier) -> Predictor:
    return Predictor(square_classifier)


def test_leaf_probs_equal_the_classifiers_own(predictor: Predictor, square_classifier) -> None:
    images, _ = square_images(40, seed=3)
    expected = square_classifier.predict_proba(images, calibrated=True)
    np.testing.assert_allclose(predictor.leaf_probs(images), expected, rtol=1e-5, atol=1e-7)
    assert np.allclose(predictor.leaf_probs(images).sum(1), 1.0, atol=1e-5)


def test_answers_follow_the_tree(predictor: Predictor) -> None:
    images, _ = square_images(30, seed=4)
    probs = predictor.leaf_probs(images)
    tree, tt = predictor.tree, TreeTensors(predictor.tree)
    levels = [node_probs(torch.from_numpy(probs), tt, lv).numpy() for lv in range(tree.depth)]
    answers = predictor.describe(probs, top_k=4, extras={"score": list(range(30))})
    for i, answer in enumerate(answers):
        leaf = int(probs[i].argmax())
        assert answer["leaf_index"] == leaf and answer["leaf"] == tree.leaves[leaf]
        assert answer["probability"] == pytest.approx(probs[i, leaf], abs=1e-6)
        for lv, step in enumerate(answer["path"]):
            node = tree.leaf_paths[leaf][lv]
            assert step["level"] == tree.level_names[lv]
            assert step["label"] == tree.level_nodes[lv][node]
            assert step["probability"] == pytest.approx(levels[lv][i, node], abs=2e-6)
        expected_top = np.argsort(-probs[i], kind="stable")[:4]
        assert [t["label"] for t in answer["top_k"]] == [tree.leaves[j] for j in expected_top]
        assert answer["score"] == i


def test_extras_must_have_one_value_per_image(predictor: Predictor) -> None:
    probs = predictor.leaf_probs(square_images(3)[0])
    with pytest.raises(ValueError):
        predictor.describe(probs, extras={"score": [1, 2]})
