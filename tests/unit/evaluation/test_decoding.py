import numpy as np
import pytest
import torch

from models.calibration.ece import decision_ece, expected_calibration_error
from models.evaluation.decoding import (
    DECODINGS,
    combine_levels,
    decode,
    decoding_metrics,
    hierarchical_prf,
)
from models.tree.hierarchy import Hierarchy, load_builtin_tree
from models.tree.merge import TreeTensors, conditional_log_probs, leaf_log_probs
from tests.toy_models import random_logits

TREE = load_builtin_tree("fashion-mnist")


def hand_tree():
    tree = Hierarchy.from_dict({"tree": {"A": ["a1", "a2"], "B": ["b1", "b2"]}})
    return tree, TreeTensors(tree)


def test_hiclass_combiners_on_a_hand_made_case() -> None:
    tree, tt = hand_tree()
    top = torch.tensor([[0.6, 0.4]])
    leaves = torch.tensor([[0.1, 0.5, 0.3, 0.1]])  # level probabilities of the leaves
    mult = combine_levels([top, leaves], tt, "multiply")
    expect = torch.tensor([[0.06, 0.30, 0.12, 0.04]])
    torch.testing.assert_close(mult, expect / expect.sum())
    arith = combine_levels([top, leaves], tt, "arithmetic")
    expect = torch.tensor([[0.35, 0.55, 0.35, 0.25]])
    torch.testing.assert_close(arith, expect / expect.sum())
    geo = combine_levels([top, leaves], tt, "geometric")
    expect = torch.tensor([[0.06, 0.30, 0.12, 0.04]]).sqrt()
    torch.testing.assert_close(geo, expect / expect.sum())


def test_crm_prefers_the_leaf_with_least_expected_lca_height() -> None:
    tree, tt = hand_tree()
    # a1 is the single most likely leaf, but the B subtree holds most of the mass
    probs = torch.tensor([[0.4, 0.0, 0.3, 0.3]])
    cond = [torch.zeros(1, 2), torch.zeros(1, 4)]
    assert decode(probs, cond, tt, "product")[0].item() == 0
    # expected heights: a1: 0.3*2+0.3*2=1.2; b1: 0.4*2+0.3*1=1.1; b2 the same
    assert decode(probs, cond, tt, "crm")[0].item() in (2, 3)


def test_hierarchical_f1_matches_its_closed_form_for_whole_paths() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    pred = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 10, 300))
    prf = hierarchical_prf(pred, labels, TREE)
    share = (TREE.leaf_paths[pred] == TREE.leaf_paths[labels]).mean()
    assert prf["source"] == "hiclass"
    for key in ("hier_precision", "hier_recall", "hier_f1"):
        assert prf[key] == pytest.approx(share)


def test_every_decoding_is_scored_and_product_ece_is_torchmetrics() -> None:
    tt = TreeTensors(TREE)
    logits = random_logits(500, scale=2.0)
    cond = conditional_log_probs(logits, tt)
    probs = leaf_log_probs(cond, tt).exp()
    labels = probs.argmax(1).numpy()
    labels[::3] = (labels[::3] + 1) % 10
    out = decoding_metrics(probs, cond, labels, tt)
    assert set(out) == set(DECODINGS)
    assert out["product"]["ece_fine"] == pytest.approx(
        expected_calibration_error(probs, torch.from_numpy(labels)), abs=1e-4
    )
    # CRM's expected LCA height under the model's own distribution is the least of all leaves
    heights = torch.as_tensor(TREE.lca_height, dtype=probs.dtype)
    risk = probs @ heights  # [N, n_leaves]
    for how in DECODINGS:
        chosen = risk.gather(1, decode(probs, cond, tt, how)[0][:, None])
        assert (risk.gather(1, decode(probs, cond, tt, "crm")[0][:, None]) <= chosen + 1e-6).all()
    conf = torch.tensor([0.95, 0.95, 0.55, 0.55])
    assert decision_ece(conf, torch.tensor([True, True, True, False])) == pytest.approx(
        0.05 * 0.5 + 0.05 * 0.5
    )


def test_torch_only_ece_is_torchmetrics_ece() -> None:
    probs = leaf_log_probs(
        conditional_log_probs(random_logits(800, scale=1.5), TreeTensors(TREE)), TreeTensors(TREE)
    ).exp()
    labels = torch.randint(0, 10, (800,), generator=torch.Generator().manual_seed(3))
    conf, pred = probs.max(1)
    assert decision_ece(conf, pred == labels) == pytest.approx(
        expected_calibration_error(probs, labels), abs=1e-6
    )
