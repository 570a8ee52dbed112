"""The hierarchical classifier: augmentation, label fractions, a tiny fit, the saved artifact."""

from pathlib import Path

import numpy as np
import pytest
import torch

from models.classifier.augment import augment_batch
from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.training import fit_classifier
from models.data.dataset import stratified_fraction
from models.evaluation.metrics import hierarchical_metrics
from models.gan.networks import GanArchitecture, build_gan
from models.tree.hierarchy import Hierarchy, load_builtin_tree

TREE = load_builtin_tree("fashion-mnist")


def test_augment_keeps_shape_and_range() -> None:
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    g = torch.Generator().manual_seed(0)
    y = augment_batch(x, g, hflip=True)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    no_shift = augment_batch(x, torch.Generator().manual_seed(0), hflip=False, max_shift=0)
    torch.testing.assert_close(no_shift, x)


def test_label_fraction_is_stratified() -> None:
    labels = np.repeat(np.arange(10), 100)
    idx = stratified_fraction(labels, 0.05, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [5] * 10)
    np.testing.assert_array_equal(stratified_fraction(labels, 1.0, 0), np.arange(1000))


def toy_tree_data(n: int = 240, seed: int = 0):
    """A 2-level toy tree whose classes differ in where a bright square sits."""
    tree = Hierarchy.from_dict({"tree": {"top": ["tl", "tr"], "bottom": ["bl", "br"]}})
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    images = rng.integers(0, 40, (n, 28, 28, 1), dtype=np.uint8)
    for i, lab in enumerate(labels):
        r, c = (2 if lab < 2 else 16), (2 if lab % 2 == 0 else 16)
        images[i, r : r + 10, c : c + 10] = 220
    return tree, images, labels


def test_tiny_end_to_end_fit_on_a_toy_tree(tmp_path: Path) -> None:
    tree, images, labels = toy_tree_data()
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8)
    _, d = build_gan(arch, seed=0)
    config = ClassifierConfig(
        epochs=12, batch_size=32, hidden=32, lr=5e-3, augment=False, num_threads=1, freeze_epochs=1
    )
    result = fit_classifier(
        config,
        arch,
        tree,
        images[:160],
        labels[:160],
        images[160:],
        labels[160:],
        discriminator_state=d.state_dict(),
    )
    assert result.history[-1]["val_fine_accuracy"] > 0.9
    assert result.history[0]["frozen"] == 1.0 and result.history[-1]["frozen"] == 0.0
    trained = TrainedClassifier.from_model(result.model, config, tree, {"note": "toy"})
    trained.temperatures = [1.5, 0.8]
    trained.save(tmp_path)
    loaded = TrainedClassifier.load(tmp_path)
    assert loaded.temperatures == [1.5, 0.8] and loaded.tree == tree
    np.testing.assert_allclose(
        loaded.predict_proba(images[160:]),
        trained.predict_proba(images[160:]),
        rtol=1e-5,
        atol=1e-6,
    )
    probs = loaded.predict_proba(images[160:])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    metrics = hierarchical_metrics(probs, labels[160:], tree)
    assert metrics["accuracy_fine"] > 0.9 and metrics["accuracy_level0"] >= metrics["accuracy_fine"]


def test_scratch_and_gan_inits_share_one_code_path() -> None:
    tree, images, labels = toy_tree_data(64)
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8)
    base = dict(epochs=1, batch_size=32, hidden=16, num_threads=1)
    scratch = fit_classifier(ClassifierConfig(init="scratch", **base), arch, tree, images, labels)
    assert len(scratch.history) == 1
    with pytest.raises(ValueError, match="needs the GAN discriminator"):
        fit_classifier(ClassifierConfig(init="gan", **base), arch, tree, images, labels)


def test_saved_classifier_with_full_map_pooling_loads(tmp_path: Path) -> None:
    # the classifier's feature_pool is copied into its architecture: it must survive a reload
    tree, images, labels = toy_tree_data(32)
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8)
    config = ClassifierConfig(
        init="scratch", feature_pool=7, epochs=1, batch_size=16, hidden=8, num_threads=1
    )
    fit = fit_classifier(config, arch, tree, images, labels)
    TrainedClassifier.from_model(fit.model, config, tree, {}).save(tmp_path)
    assert TrainedClassifier.load(tmp_path).architecture.feature_pool == 7


def test_artifact_keeps_calibration_maps_and_reads_the_temperatures_only_format(
    tmp_path: Path,
) -> None:
    import json

    from models.tree.merge import LevelCalibration

    tree, images, labels = toy_tree_data(32)
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8)
    config = ClassifierConfig(init="scratch", epochs=1, batch_size=16, hidden=8, num_threads=1)
    fit = fit_classifier(config, arch, tree, images, labels)
    trained = TrainedClassifier.from_model(fit.model, config, tree, {})
    trained.calibration = [
        LevelCalibration.temperature(1.3),
        LevelCalibration("vector", (1.1, 0.9, 1.0, 1.2), (0.1, 0.0, -0.1, 0.0)),
    ]
    trained.save(tmp_path)
    loaded = TrainedClassifier.load(tmp_path)
    assert loaded.calibration == trained.calibration
    assert loaded.temperatures == [1.3, None]
    assert loaded.calibration_methods == {"level0": "temperature", "level1": "vector"}
    np.testing.assert_allclose(loaded.predict_proba(images), trained.predict_proba(images))
    # an artifact written before calibration maps existed: temperatures only
    meta = json.loads((tmp_path / "classifier.json").read_text())
    del meta["calibration"]
    meta["temperatures"] = [1.5, 0.8]
    (tmp_path / "classifier.json").write_text(json.dumps(meta))
    assert TrainedClassifier.load(tmp_path).temperatures == [1.5, 0.8]
