from pathlib import Path

import numpy as np
import pytest
import torch

from models.calibration import (
    conditional_nll,
    expected_calibration_error,
    fit_temperatures,
    reliability_diagram_png,
)
from models.classifier import (
    ClassifierConfig,
    augment_batch,
    fit_classifier,
)
from models.classifier_io import TrainedClassifier
from models.data import stratified_fraction
from models.gan import GanArchitecture, build_gan
from models.hierarchy import Hierarchy, load_builtin_tree
from models.merge import (
    TreeTensors,
    conditional_log_probs,
    decode_global,
    decode_greedy,
    independent_argmax_paths,
    leaf_log_probs,
    merged_leaf_probs,
    node_probs,
    path_consistency,
)
from models.metrics import confusion_matrices, confusion_png, hierarchical_metrics

TREE = load_builtin_tree("fashion-mnist")


def random_logits(
    n: int, tree: Hierarchy = TREE, scale: float = 3.0, seed: int = 0
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, s, generator=g) * scale for s in tree.level_sizes]


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
    probs = merged_leaf_probs(logits, tt)
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


def make_miscalibrated(n: int = 4000, seed: int = 0):
    """Logits that are right most of the time but 4x overconfident."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, TREE.num_leaves, (n,), generator=g)
    level_labels = torch.from_numpy(TREE.all_level_labels(labels.numpy()))
    logits = []
    for level, size in enumerate(TREE.level_sizes):
        z = torch.randn(n, size, generator=g)
        z[torch.arange(n), level_labels[:, level]] += 1.5
        logits.append(z * 4.0)
    return logits, labels, level_labels


def test_temperature_scaling_keeps_accuracy_and_lowers_nll() -> None:
    tt = TreeTensors(TREE)
    logits, labels, level_labels = make_miscalibrated()
    val = slice(0, 2000)
    test = slice(2000, 4000)
    temps = fit_temperatures([z[val] for z in logits], level_labels[val], tt)
    assert (temps > 2.0).all()  # it undoes the 4x overconfidence
    test_logits = [z[test] for z in logits]
    before = conditional_nll(test_logits, level_labels[test], tt)
    after = conditional_nll(test_logits, level_labels[test], tt, temps)
    assert all(a < b for a, b in zip(after, before, strict=True))
    # within every sibling group the ranking is unchanged, so greedy decoding is too
    scaled = [w / t for w, t in zip(test_logits, temps, strict=True)]
    greedy_before = decode_greedy(conditional_log_probs(test_logits, tt), tt)
    greedy_after = decode_greedy(conditional_log_probs(scaled, tt), tt)
    assert torch.equal(greedy_before, greedy_after)
    p_before = merged_leaf_probs(test_logits, tt)
    p_after = merged_leaf_probs(test_logits, tt, temps)
    ece_before = expected_calibration_error(p_before, labels[test])
    ece_after = expected_calibration_error(p_after, labels[test])
    assert ece_after < ece_before / 2
    png = reliability_diagram_png(
        {"before": (p_before, labels[test]), "after": (p_after, labels[test])}, "toy"
    )
    assert png[:4] == b"\x89PNG"


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
