"""The guarded forward pass and the component scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.ood.scores import (
    ProjectedProducts,
    energy_score,
    guarded_forward,
    knn_distance,
    mean_quadratic_forms,
    min_mahalanobis,
)
from models.runtime.tensors import to_model_range
from models.tree.merge import TreeTensors
from tests.toy_models import TREE, square_classifier, square_images


@pytest.mark.parametrize("tta_flip", [False, True])
def test_guarded_forward_gives_the_models_logits(tta_flip: bool) -> None:
    classifier = square_classifier()
    classifier.config = classifier.config.model_copy(update={"tta_flip": tta_flip})
    model = classifier.build()
    assert model.tta_flip == tta_flip
    images, _ = square_images(16)
    x = to_model_range(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.no_grad():
        expected = model(x)
        out = guarded_forward(model, None, x)
    for a, b in zip(expected, out.logits, strict=True):
        torch.testing.assert_close(a, b)
    assert out.realness is None
    assert out.layers["trunk"].shape == (16, 2 * sum(c.out_channels for c in _convs(model)))
    assert out.layers["neck"].shape == (16, classifier.config.hidden)


def _convs(model: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [m for m in model.backbone.trunk.modules() if isinstance(m, torch.nn.Conv2d)]


def test_min_mahalanobis_equals_the_direct_formula() -> None:
    g = torch.Generator().manual_seed(0)
    features, means = torch.randn(7, 5, generator=g), torch.randn(3, 5, generator=g)
    a = torch.randn(5, 5, generator=g)
    precision = a @ a.T + torch.eye(5)
    direct = torch.tensor(
        [min(float((f - m) @ precision @ (f - m)) for m in means) for f in features]
    )
    torch.testing.assert_close(
        min_mahalanobis(features, means, precision), direct, rtol=1e-4, atol=1e-4
    )
    kept = mean_quadratic_forms(means, precision)  # what the guard keeps between calls
    torch.testing.assert_close(
        min_mahalanobis(features, means, precision, kept), direct, rtol=1e-4, atol=1e-4
    )


def test_knn_distance_is_one_minus_the_kth_largest_cosine() -> None:
    g = torch.Generator().manual_seed(2)
    features, bank = torch.randn(6, 4, generator=g) * 5, torch.randn(30, 4, generator=g)
    bank = torch.nn.functional.normalize(bank, dim=1)
    for k in (1, 3, 30):
        direct = torch.tensor(
            [
                1 - sorted((float(f @ b / f.norm()) for b in bank), reverse=True)[k - 1]
                for f in features
            ]
        )
        torch.testing.assert_close(knn_distance(features, bank, k), direct, rtol=1e-5, atol=1e-5)
    # the norm of a feature vector does not matter, only its direction
    torch.testing.assert_close(
        knn_distance(features * 0.01, bank, 3), knn_distance(features, bank, 3)
    )
    assert (
        float(knn_distance(bank[:1] * 7, bank, 1)) < 1e-6
    )  # a training point is its own neighbour


def test_energy_is_minus_logsumexp_of_path_scores() -> None:
    g = torch.Generator().manual_seed(1)
    logits = [torch.randn(4, n, generator=g) for n in TREE.level_sizes]
    tt = TreeTensors(TREE)
    paths = TREE.leaf_paths
    manual = -torch.logsumexp(
        torch.stack(
            [
                sum(logits[lv][:, paths[leaf, lv]] for lv in range(TREE.depth))
                for leaf in range(TREE.num_leaves)
            ],
            dim=1,
        ),
        dim=1,
    )
    torch.testing.assert_close(energy_score(logits, tt), manual)
    # a confident input (one path far ahead) has lower energy than a flat one
    flat = [torch.zeros(1, n) for n in TREE.level_sizes]
    sharp = [torch.zeros(1, n) for n in TREE.level_sizes]
    for lv in range(TREE.depth):
        sharp[lv][0, paths[0, lv]] = 10.0
    assert energy_score(sharp, tt) < energy_score(flat, tt)


def test_auroc_matches_a_pairwise_count_with_ties() -> None:
    from models.ood.evaluate import auroc, fpr_at_tpr

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 50).astype(float), rng.integers(2, 8, 40).astype(float)
    pairs = (b[None, :] > a[:, None]).mean() + 0.5 * (b[None, :] == a[:, None]).mean()
    assert abs(auroc(a, b) - pairs) < 1e-12
    assert auroc(np.zeros(3), np.ones(3)) == 1.0
    assert fpr_at_tpr(np.arange(100.0), np.arange(100.0, 200.0)) == 0.0


def test_two_stage_knn_search_returns_the_float32_answer() -> None:
    """Projected candidates, float32 re-ranking: the exact k-th distance on clustered features.

    Like a network's features, they vary mostly in a few directions (here 10 centres and a
    spread in 6 directions, plus a little in all 64).
    """
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(10, 64, generator=g)
    spread = torch.randn(6, 64, generator=g)

    def sample(n: int) -> torch.Tensor:
        within = torch.randn(n, 6, generator=g) @ spread + 0.05 * torch.randn(n, 64, generator=g)
        return centres[torch.arange(n) % 10] + 0.3 * within

    bank = torch.nn.functional.normalize(sample(3000), dim=1)
    features = sample(40)
    coarse = ProjectedProducts(bank, dim=12)
    rough, exact = coarse(features), features @ bank.T
    # approximate: the products of the projections on the bank's top 12 directions of 16
    assert coarse.basis.shape == (64, 12) and float((rough - exact).abs().max()) > 0.5
    for k in (1, 10):
        torch.testing.assert_close(
            knn_distance(features, bank, k, coarse), knn_distance(features, bank, k)
        )
    # as many directions as features: the products themselves
    torch.testing.assert_close(ProjectedProducts(bank, dim=64)(features), exact)
    # a bank too small for a first stage: one float32 pass
    small = bank[:30]
    torch.testing.assert_close(
        knn_distance(features, small, 5, ProjectedProducts(small)), knn_distance(features, small, 5)
    )
