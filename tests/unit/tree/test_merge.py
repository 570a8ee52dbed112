"""Merging per-level logits into a distribution over valid paths."""

import pytest
import torch

from models.tree.hierarchy import Hierarchy, load_builtin_tree
from models.tree.merge import (
    TreeTensors,
    conditional_log_probs,
    decode_global,
    decode_greedy,
    independent_argmax_paths,
    leaf_log_probs,
    merged_log_probs,
    node_probs,
    path_consistency,
)
from tests.toy_models import random_logits

TREE = load_builtin_tree("fashion-mnist")


@pytest.mark.parametrize("tree_name", ["fashion-mnist", "cifar10", "cifar100"])
def test_merge_gives_distributions_over_valid_paths(tree_name: str) -> None:
    tree = load_builtin_tree(tree_name)
    tt = TreeTensors(tree)
    logits = random_logits(64, tree)
    cond = conditional_log_probs(logits, tt)
    probs = leaf_log_probs(cond, tt).exp()
    torch.testing.assert_close(probs.sum(1), torch.ones(64))
    for level in range(tree.depth):
        marg = node_probs(probs, tt, level)
        torch.testing.assert_close(marg.sum(1), torch.ones(64))
        # conditionals sum to one within every sibling group
        for parent in range(tt.sibling_masks[level].shape[0]):
            group = cond[level][:, tt.sibling_masks[level][parent]].exp().sum(1)
            torch.testing.assert_close(group, torch.ones(64))
    for leaves in (decode_global(probs.log()), decode_greedy(cond, tt)):
        paths = tt.leaf_paths[leaves]
        assert path_consistency(paths, tt) == 1.0


def test_merge_on_a_hand_made_case() -> None:
    tree = Hierarchy.from_dict({"tree": {"A": ["a1", "a2"], "B": ["b1"]}})
    tt = TreeTensors(tree)
    # P(A)=0.6, P(B)=0.4; P(a1|A)=0.25, P(a2|A)=0.75; P(b1|B)=1 whatever its logit
    logits = [torch.log(torch.tensor([[0.6, 0.4]])), torch.log(torch.tensor([[0.25, 0.75, 0.123]]))]
    probs = merged_log_probs(logits, tt).exp()
    torch.testing.assert_close(probs, torch.tensor([[0.15, 0.45, 0.4]]))
    # global argmax: a2 (0.45); greedy: A then a2 as well
    assert decode_global(probs.log()).item() == 1
    # greedy and global differ when the best parent splits its mass
    logits = [torch.log(torch.tensor([[0.55, 0.45]])), torch.log(torch.tensor([[0.5, 0.5, 1.0]]))]
    cond = conditional_log_probs(logits, tt)
    assert decode_global(leaf_log_probs(cond, tt)).item() == 2  # b1: 0.45 > 0.275
    assert decode_greedy(cond, tt).item() in (0, 1)  # greedy commits to A


def test_independent_argmax_can_be_inconsistent() -> None:
    tt = TreeTensors(TREE)
    paths = independent_argmax_paths(random_logits(500))
    assert path_consistency(paths, tt) < 0.5
