"""Drift features: shapes, the projection fitted on the reference, predictions along a path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.network import HierarchicalClassifier
from models.gan.networks import GanArchitecture
from models.monitoring.features import (
    DriftFeatureConfig,
    DriftFeatureExtractor,
    Projection,
    drift_columns,
    image_statistics,
    prediction_columns,
    score_images,
)
from models.tree.hierarchy import load_builtin_tree

TREE = load_builtin_tree("fashion-mnist")


def tiny_classifier(seed: int = 0) -> TrainedClassifier:
    """An untrained (random) classifier: the features' plumbing does not need a good model."""
    torch.manual_seed(seed)
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8, feature_pool=2)
    config = ClassifierConfig(hidden=16, feature_pool=2)
    model = HierarchicalClassifier(arch, TREE.level_sizes, config).eval()
    trained = TrainedClassifier.from_model(model, config, TREE, {"dataset_hash": "abc"})
    trained.temperatures = [1.2, 0.9, 1.1]
    return trained


def images(n: int, seed: int = 0, low: int = 0, high: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, (n, 28, 28, 1), dtype=np.uint8)


def test_one_pass_gives_the_classifiers_own_probabilities_and_trunk_features() -> None:
    clf = tiny_classifier()
    x = images(40)
    model = clf.build()
    scored = score_images(clf, x, model, batch_size=16)
    assert scored.embeddings.shape == (40, model.backbone.feature_dim)
    np.testing.assert_allclose(scored.leaf_probs, clf.predict_proba(x), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        ref = model.backbone.features(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1)
    np.testing.assert_allclose(scored.embeddings, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_projection_is_fitted_on_the_reference_only() -> None:
    rng = np.random.default_rng(0)
    # variance concentrated on two known directions
    basis = np.linalg.qr(rng.normal(size=(30, 30)))[0]
    ref = (
        rng.normal(size=(500, 2)) * [10.0, 5.0] @ basis[:, :2].T + rng.normal(size=(500, 30)) * 0.1
    )
    ref += 3.0
    proj = Projection.fit(ref.astype(np.float32), n_components=2, seed=0)
    np.testing.assert_allclose(proj.mean, ref.mean(0), atol=1e-4)
    # the fitted directions span the two true ones
    overlap = np.abs(proj.components.T @ basis[:, :2])
    np.testing.assert_allclose(np.sort(overlap.max(1)), [1.0, 1.0], atol=1e-3)
    assert proj.explained_variance_ratio[0] > proj.explained_variance_ratio[1] > 0.1
    # reference scores are centred; a shifted batch's are not, with the same projection
    assert np.abs(proj.transform(ref).mean(0)).max() < 1e-3
    shifted = ref + 5.0 * basis[:, 0]
    assert abs(proj.transform(shifted)[:, 0].mean()) == pytest.approx(5.0, rel=1e-3)
    again = Projection.fit(ref.astype(np.float32), n_components=2, seed=0)
    np.testing.assert_array_equal(again.components, proj.components)


def test_extractor_frame_columns_and_reference_fit() -> None:
    clf = tiny_classifier()
    ex = DriftFeatureExtractor(clf, DriftFeatureConfig(n_components=4, batch_size=32))
    with pytest.raises(RuntimeError, match="fit_reference"):
        ex.transform(images(5))
    ref = ex.fit_reference(images(120, seed=1))
    batch = ex.transform(images(30, seed=2))
    expected = drift_columns(TREE, 4)
    assert list(ref.columns) == list(batch.columns) == expected.all
    assert expected.categorical == ["pred_category", "pred_group", "pred_item"]
    assert len(ref) == 120 and len(batch) == 30
    assert np.abs(ref[expected.numerical[:4]].mean()).max() < 1e-3  # centred on the reference
    assert set(batch["pred_item"]) <= set(TREE.leaves)
    assert batch["pred_item"].dtype == object


def test_predictions_form_a_path_with_marginal_confidences() -> None:
    probs = np.zeros((2, 10), np.float32)
    probs[0, TREE.leaf_index("Sneaker")] = 0.5
    probs[0, TREE.leaf_index("Sandal")] = 0.3
    probs[0, TREE.leaf_index("Bag")] = 0.2
    probs[1, TREE.leaf_index("Shirt")] = 0.4
    probs[1, TREE.leaf_index("Coat")] = 0.35
    probs[1, TREE.leaf_index("Pullover")] = 0.25
    cols = prediction_columns(probs, TREE)
    assert list(cols["pred_item"]) == ["Sneaker", "Shirt"]
    assert list(cols["pred_group"]) == ["Shoes", "Tops"]
    assert list(cols["pred_category"]) == ["Goods", "Clothes"]
    np.testing.assert_allclose(cols["conf_group"], [0.8, 0.65], atol=1e-6)
    np.testing.assert_allclose(cols["conf_category"], [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(cols["conf_item"], [0.5, 0.4], atol=1e-6)


def test_image_statistics_by_hand() -> None:
    x = np.zeros((2, 4, 4, 1), np.uint8)
    x[1, :, 2:] = 255  # right half white: one vertical edge
    stats = image_statistics(x)
    np.testing.assert_allclose(stats["img_mean"], [0.0, 0.5])
    np.testing.assert_allclose(stats["img_std"], [0.0, 0.5])
    np.testing.assert_allclose(stats["img_min"], [0.0, 0.0])
    np.testing.assert_allclose(stats["img_max"], [0.0, 1.0])
    # horizontal differences: 1 of 3 per row is 1; vertical: none -> (1/3 + 0) / 2
    np.testing.assert_allclose(stats["img_edges"], [0.0, 1 / 6], atol=1e-6)


def test_wrong_images_are_refused_with_their_shape() -> None:
    ex = DriftFeatureExtractor(tiny_classifier(), DriftFeatureConfig(n_components=2))
    ex.fit_reference(images(20))
    with pytest.raises(ValueError, match=r"batch x: expected images of shape \[N, 28, 28, 1\]"):
        ex.transform(np.zeros((3, 32, 32, 3), np.uint8), where="batch x")
    with pytest.raises(ValueError, match="must be uint8"):
        ex.transform(np.zeros((3, 28, 28, 1), np.float32))
    # [N, H, W] gets its channel axis
    assert len(ex.transform(np.zeros((3, 28, 28), np.uint8))) == 3
