"""Hierarchical metrics by hand: mistake severity and hierarchical distance."""

import numpy as np
import pytest

from models.evaluation.metrics import confusion_matrices, confusion_png, hierarchical_metrics
from models.tree.hierarchy import load_builtin_tree

TREE = load_builtin_tree("fashion-mnist")


def test_mistake_severity_and_hier_distance_by_hand() -> None:
    tshirt, shirt, trouser, bag = (
        TREE.leaf_index(n) for n in ("T-shirt/top", "Shirt", "Trouser", "Bag")
    )
    labels = np.array([tshirt, tshirt, tshirt, tshirt])
    preds = np.array([tshirt, shirt, trouser, bag])  # heights 0, 1, 2, 3
    probs = np.full((4, 10), 0.01)
    probs[np.arange(4), preds] = 0.91
    m = hierarchical_metrics(probs, labels, TREE, ks=(1,))
    assert m["accuracy_fine"] == 0.25
    assert m["mistake_severity"] == pytest.approx((1 + 2 + 3) / 3)
    assert m["hier_distance_at_1"] == pytest.approx((0 + 1 + 2 + 3) / 4)
    assert m["accuracy_category"] == 0.75  # the Bag is the only wrong category
    assert m["accuracy_group"] == 0.5
    mats = confusion_matrices(preds, labels, TREE)
    assert [m.shape for m in mats] == [(2, 2), (6, 6), (10, 10)]
    assert mats[2][tshirt].sum() == 4 and mats[2][tshirt, bag] == 1
    assert confusion_png(mats, TREE)[:4] == b"\x89PNG"
