"""A coarse level's marginal, and the model an attack on that level's own loss attacks."""

from __future__ import annotations

import torch

from models.attacks.evasion import MergedLeafModel
from models.robustness.level_attack import MergedLevelModel, level_marginals
from models.tree.merge import TreeTensors
from tests.toy_models import TREE


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
