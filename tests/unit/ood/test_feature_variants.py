"""The feature-variants bench: its ``served`` column is the guard's own score; the variants."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.ood_feature_variants import (
    SERVED,
    VARIANTS,
    feature_parts,
    variant_features,
    variant_scores,
)
from models.gan.networks import Discriminator
from models.ood import OodConfig, fit_guard, score_images
from models.ood.fit import fit_gaussians
from tests.toy_models import ARCH, square_classifier, square_images


def test_the_served_column_is_the_guards_score(noise_images) -> None:
    classifier = square_classifier()
    splits = {
        "train": square_images(400, seed=1),
        "val": square_images(200, seed=2),
        "test": square_images(200, seed=5),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        discriminator = Discriminator(ARCH).eval()
    config = OodConfig(
        scorer="knn_rmd_complexity",
        fit_images=400,
        knn_images=200,
        device="cpu",
        batch_size=64,
        runtime_thresholds=[],
    )
    scored = variant_scores(classifier, discriminator, splits, {"noise": noise_images}, config)
    assert set(scored) == {SERVED, *VARIANTS}
    guard, _ = fit_guard(classifier, discriminator, *splits["train"], splits["val"][0], config)
    (served, threshold) = scored[SERVED]
    for name, images in (("test", splits["test"][0]), ("noise", noise_images)):
        expected = score_images(classifier, guard, images).score
        np.testing.assert_allclose(served[name], expected, rtol=1e-4, atol=1e-3)
    assert threshold == pytest.approx(guard.threshold, rel=1e-4, abs=1e-3)
    for variant in VARIANTS:  # every variant scores every image, threshold from its own val
        scores, _ = scored[variant]
        assert {k: v.shape for k, v in scores.items()} == {"test": (200,), "noise": (100,)}
        assert not np.allclose(scores["test"], served["test"])


def test_the_variants_of_the_features() -> None:
    rng = np.random.default_rng(0)
    views = {"own": rng.normal(size=(5, 8)).astype(np.float32)}
    views["mirror"] = rng.normal(size=(5, 8)).astype(np.float32)
    own = torch.from_numpy(views["own"])
    assert torch.equal(variant_features(SERVED, views), own)
    norms = variant_features("normalised", views).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(5))
    mean = variant_features("mirror-mean", views)
    torch.testing.assert_close(mean, (own + torch.from_numpy(views["mirror"])) / 2)


def test_the_whitened_knn_part_is_the_mahalanobis_distance_to_the_nearest_bank_image() -> None:
    rng = np.random.default_rng(1)
    fit = torch.from_numpy(rng.normal(size=(60, 4)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 3, size=(60, 1))).long()
    tree = SimpleNamespace(level_names=("item",))
    config = OodConfig(neighbours=2, shrinkage=1e-3, knn_leaves=None)
    bank = np.arange(0, 60, 3)
    leaves = labels[bank, 0]
    parts = feature_parts(fit, labels, bank, tree, config, leaves, whitened=True)
    z = torch.from_numpy(rng.normal(size=(7, 4)).astype(np.float32))
    _, precision = fit_gaussians(fit, labels, ["item"], config.shrinkage)["item"]
    d = z[:, None, :] - fit[bank][None]  # [7, 20, 4]
    distances = torch.einsum("bnd,de,bne->bn", d, precision, d).sqrt()
    expected = distances.sort(dim=1).values[:, 1]  # the 2nd nearest
    probs = np.full((7, 3), 1 / 3)
    np.testing.assert_allclose(parts(z, probs)["knn"], expected.numpy(), rtol=1e-4)
    served = feature_parts(fit, labels, bank, tree, config, leaves)(z, probs)
    np.testing.assert_allclose(  # the Gaussian part is the served one
        parts(z, probs)["rmd_neck_item"], served["rmd_neck_item"], rtol=1e-5
    )
