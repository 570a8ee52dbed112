"""A coarse level's marginal, and the model an attack on that level's own loss attacks."""

from __future__ import annotations

import pytest
import torch

from models.attacks.evasion import MergedLeafModel
from models.robustness.config import RobustnessConfig
from models.robustness.level_attack import MergedLevelModel, attack_on_level, level_marginals
from models.runtime.tensors import to_unit_range
from models.tree.merge import TreeTensors
from tests.toy_models import TREE, square_images


def test_a_levels_marginal_is_the_sum_of_its_leaves_probabilities() -> None:
    leaf_lp = torch.log_softmax(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), 1)
    node_of_leaf = torch.tensor([0, 0, 1, 1])
    marg = level_marginals(leaf_lp, node_of_leaf, 2).exp()
    p = leaf_lp.exp()
    torch.testing.assert_close(marg, torch.stack([p[:, :2].sum(1), p[:, 2:].sum(1)], 1))


def test_the_level_model_gives_a_distribution_over_the_levels_nodes() -> None:
    tt = TreeTensors(TREE, "cpu")
    depth_sizes = [int(tt.leaf_paths[:, lv].max()) + 1 for lv in range(TREE.depth)]

    class Logits(torch.nn.Module):  # per-level logits of a tiny image batch
        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            flat = x.flatten(1)[:, :1]
            return [flat * (k + 1) + torch.arange(n).float() for k, n in enumerate(depth_sizes)]

    merged = MergedLeafModel(Logits(), tt)
    x = torch.rand(3, 1, 4, 4)
    for level in range(TREE.depth - 1):
        out = MergedLevelModel(merged, level)(x)
        assert out.shape == (3, depth_sizes[level])
        torch.testing.assert_close(out.exp().sum(1), torch.ones(3))


def test_a_two_node_level_is_attacked_by_autoattack_without_dlr(square_classifier) -> None:
    """DLR needs a third logit: a 2-node level's AutoAttack runs APGD-CE and Square."""
    tree = square_classifier.tree
    assert tree.level_sizes[0] == 2
    merged = MergedLeafModel(square_classifier.build("cpu"), TreeTensors(tree, "cpu")).eval()
    x, y = square_images(20, seed=7)
    config = RobustnessConfig(
        autoattack_eps=[0.1], autoattack_iter=3, autoattack_square_queries=10, batch_size=20
    )
    x = to_unit_range(x)
    scores = attack_on_level(merged, x, y, tree, "category", "autoattack", 0.1, config)
    assert scores["max_linf"] <= 0.1 + 1e-5
    assert 0.0 <= scores["accuracy_category"] <= 1.0
    with pytest.raises(ValueError, match="needs a coarse level"):
        attack_on_level(merged, x, y, tree, "fine", "pgd", 0.1, config)
