"""The tree-conditioned networks, the game's losses and config, and the checks before training."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from models.gan.conditional import (
    ProjectionDiscriminator,
    TreeEmbedding,
    build_conditional_gan,
)
from models.gan.config import GanTrainConfig
from models.gan.io import TrainedGan
from models.gan.networks import GanArchitecture
from models.gan.triple_config import TripleConfig
from models.triple import losses
from models.triple.inputs import TripleInputError, labelled_subset
from models.triple.merge import fit_merge_weight
from models.triple.pictures import fidelity_of
from tests.toy_models import TREE

ARCH = GanArchitecture(latent_dim=8, g_width=8, d_width=8, spectral_norm=True)


def test_hierarchical_embedding_is_the_sum_over_the_path() -> None:
    emb = TreeEmbedding(TREE, 5, hierarchical=True)
    assert emb.weight.shape == (sum(TREE.level_sizes), 5)
    shirt, tshirt, sandal = (TREE.leaf_index(n) for n in ("Shirt", "T-shirt/top", "Sandal"))
    offsets = np.cumsum([0, *TREE.level_sizes[:-1]])
    rows = TREE.leaf_paths[shirt] + offsets
    torch.testing.assert_close(emb(torch.tensor([shirt]))[0], emb.weight[rows].sum(0))
    # siblings (Shirt, T-shirt: both Clothes/Tops) differ only by their own leaf rows ...
    diff = emb(torch.tensor([shirt])) - emb(torch.tensor([tshirt]))
    torch.testing.assert_close(diff[0], emb.weight[rows[-1]] - emb.weight[offsets[-1] + tshirt])
    # ... while a Sandal (Goods/Shoes) shares none of Shirt's rows
    assert not set(TREE.leaf_paths[sandal] + offsets) & set(rows)
    torch.testing.assert_close(emb.all_leaves(), emb(torch.arange(TREE.num_leaves)))


def test_flat_embedding_is_one_row_per_leaf() -> None:
    emb = TreeEmbedding(TREE, 5, hierarchical=False)
    assert emb.weight.shape == (TREE.num_leaves, 5)
    torch.testing.assert_close(emb(torch.arange(TREE.num_leaves)), emb.weight)


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_conditional_generator_shapes_and_conditioning(size: int, channels: int) -> None:
    arch = ARCH.model_copy(update={"image_size": size, "channels": channels})
    g, d = build_conditional_gan(arch, TREE, embed_dim=6, hierarchical=True, seed=0)
    g.eval()
    z = torch.randn(1, 8).repeat(TREE.num_leaves, 1)
    x = g(z, torch.arange(TREE.num_leaves))
    assert x.shape == (TREE.num_leaves, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    g.norms[0].bias.weight.data.normal_()  # a trained conditional bias: same z, other leaf
    x = g(z, torch.arange(TREE.num_leaves))
    assert not torch.allclose(x[0], x[1])
    assert d(x, torch.arange(TREE.num_leaves)).shape == (TREE.num_leaves,)


def test_projection_scores_every_leaf_at_once() -> None:
    d = ProjectionDiscriminator(ARCH, TREE, hierarchical=True).eval()
    x = torch.randn(4, 1, 28, 28)
    leaves = torch.tensor([0, 3, 5, 9])
    scores, proj = d.all_leaves(x)
    assert scores.shape == proj.shape == (4, TREE.num_leaves)
    torch.testing.assert_close(d(x, leaves), scores[torch.arange(4), leaves])
    # the unconditional term cancels in D read as a classifier
    torch.testing.assert_close(scores.softmax(1), d.leaf_logits(x).softmax(1))


def test_conditional_gan_round_trips_through_its_artifact(tmp_path) -> None:
    g, d = build_conditional_gan(ARCH, TREE, embed_dim=6, hierarchical=False, seed=1)
    TrainedGan.from_conditional(g, d, TREE, {"mode": "triple"}).save(tmp_path)
    loaded = TrainedGan.load(tmp_path)
    z, y = torch.randn(3, 8), torch.tensor([1, 4, 8])
    torch.testing.assert_close(loaded.conditional_generator()(z, y), g.eval()(z, y))
    with pytest.raises(ValueError, match="tree-conditioned"):
        loaded.generator()


def test_artifacts_from_before_embed_input_load_with_the_embedding_at_the_input(tmp_path) -> None:
    g, d = build_conditional_gan(
        ARCH, TREE, embed_dim=6, hierarchical=True, seed=2, embed_input=True
    )
    TrainedGan.from_conditional(g, d, TREE, {"mode": "triple"}).save(tmp_path)
    loaded = TrainedGan.load(tmp_path)
    assert loaded.conditioning is not None
    del loaded.conditioning["embed_input"]  # as an artifact saved before the key existed
    z, y = torch.randn(3, 8), torch.tensor([0, 2, 7])
    torch.testing.assert_close(loaded.conditional_generator()(z, y), g.eval()(z, y))


def test_g_draws_from_z_not_only_from_the_leaf() -> None:
    g, _ = build_conditional_gan(ARCH, TREE, embed_dim=6, hierarchical=True, seed=0)
    assert not g.embed_input and g.convs[0].in_channels == ARCH.latent_dim
    g.eval()
    x = g(torch.randn(2, 8), torch.tensor([3, 3]))  # one leaf, two codes: two images
    assert not torch.allclose(x[0], x[1])


def test_pair_losses() -> None:
    for kind in ("hinge", "bce"):
        pair = losses.PairLoss(kind)
        high, low = torch.full((6,), 3.0), torch.full((6,), -3.0)
        assert pair.real(high) < pair.real(low)
        assert pair.fake(low).mean() < pair.fake(high).mean()
        assert pair.gen(high).mean() < pair.gen(low).mean()
    with pytest.raises(ValueError, match="gan.loss"):
        losses.PairLoss("wasserstein")


def test_discriminator_loss_weighs_g_and_c_pairs() -> None:
    pair = losses.PairLoss("hinge")
    s_real, s_gen = torch.tensor([2.0, 0.5]), torch.tensor([-0.5, 1.0])
    s_all = torch.tensor([[0.0, 3.0], [1.0, -2.0]])
    p_c = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    loss, terms = losses.discriminator_loss(pair, s_real, s_gen, s_all, p_c, alpha=0.5)
    real = (0.0 + 0.5) / 2
    gen = (0.5 + 2.0) / 2
    c_pairs = (1.0 * 1.0 + (0.25 * 2.0 + 0.75 * 0.0)) / 2
    assert float(loss) == pytest.approx(real + 0.5 * gen + 0.5 * c_pairs)
    assert set(terms) == {"d_loss", "d_real", "d_gen", "d_c_pairs"}


def test_classifier_terms() -> None:
    p = torch.tensor([[0.5, 0.5]], requires_grad=True)
    scores = torch.tensor([[2.0, -1.0]], requires_grad=True)
    adv = losses.classifier_adversarial(losses.PairLoss("hinge"), p, scores)
    adv.backward()
    assert float(adv.detach()) == pytest.approx(-0.5)
    assert p.grad is not None and scores.grad is None  # D's scores are constants for C
    assert float(p.grad[0, 0]) < float(p.grad[0, 1])  # C moves towards the leaf D calls real
    q = torch.tensor([[0.2, 0.8]])
    assert float(losses.consistency(q, q)) == 0.0
    assert float(losses.entropy(torch.log(torch.tensor([[1.0, 1e-12]])))) == pytest.approx(
        0, abs=1e-9
    )
    ramp = [losses.sigmoid_ramp(t, 10, 20) for t in (0, 9, 10, 20, 30, 99)]
    assert ramp[0] == ramp[1] == 0.0 and 0 < ramp[2] < ramp[3] < ramp[4] == ramp[5] == 1.0


def test_triple_config_checks_name_the_key() -> None:
    with pytest.raises(ValueError, match="gan.triple is set but gan.mode is 'unsupervised'"):
        GanTrainConfig(triple=TripleConfig())
    with pytest.raises(ValueError, match="adversarial_weight or rp_weight"):
        TripleConfig(adversarial_weight=0, rp_weight=0)
    with pytest.raises(ValueError, match="unlabelled"):
        TripleConfig(unlabelled="pseudo-labels")
    fitted = GanTrainConfig(mode="triple").for_data((28, 28, 1), 10)
    assert fitted.triple == TripleConfig()


def test_run_key_of_the_other_modes_is_unchanged() -> None:
    """Adding the triple section must not orphan the checkpoints of earlier runs."""
    config = GanTrainConfig()
    speed = {"device", "compile", "progress", "num_threads", "log_every", "sample_every"}
    before = config.model_dump(include=set(GanTrainConfig.model_fields) - speed - {"triple"})
    blob = json.dumps({"config": before, "data": "h"}, sort_keys=True)
    assert config.run_key("h") == hashlib.sha256(blob.encode()).hexdigest()[:16]
    triple = GanTrainConfig(mode="triple", triple=TripleConfig())
    assert triple.run_key("h") != triple.model_copy(
        update={"triple": TripleConfig(rp_weight=0.5)}
    ).run_key("h")


def test_labelled_subset_fails_before_training_naming_what_is_wrong() -> None:
    labels = np.arange(200) % TREE.num_leaves
    subset = labelled_subset(TREE, labels, 0.05, seed=0)
    assert set(labels[subset]) == set(range(TREE.num_leaves))
    with pytest.raises(TripleInputError, match="needs labels"):
        labelled_subset(TREE, None, 0.05, seed=0)
    with pytest.raises(TripleInputError, match="does not match the labels.*outside the tree"):
        labelled_subset(TREE, np.append(labels, 12), 0.05, seed=0)
    no_bag = labels[labels != TREE.leaf_index("Bag")]
    with pytest.raises(
        TripleInputError, match=r"leaf 'Bag' \(Goods/Accessories/Bag\) has no image"
    ):
        labelled_subset(TREE, no_bag, 0.05, seed=0)
    without_sandal = np.flatnonzero(labels != TREE.leaf_index("Sandal"))
    with pytest.raises(TripleInputError, match=r"leaves leaf 'Sandal' \(Goods/Shoes/Sandal\)"):
        labelled_subset(TREE, labels, 0.05, seed=0, indices=without_sandal)


def test_fidelity_counts_a_right_parent_as_right_at_that_level() -> None:
    sneaker, sandal, bag = (TREE.leaf_index(n) for n in ("Sneaker", "Sandal", "Bag"))
    leaves = np.array([sneaker, sneaker, sneaker, bag])
    judged = np.array([sneaker, sandal, bag, bag])  # right, right Shoe, right Goods, right
    fid = fidelity_of(TREE, leaves, judged)
    assert fid["fidelity_item"] == fid["fidelity_fine"] == 0.5
    assert fid["fidelity_group"] == 0.75
    assert fid["fidelity_category"] == 1.0


def test_merge_weight_is_kept_only_when_it_helps() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=gen)
    truth = torch.nn.functional.one_hot(labels, 4).float()
    noisy_c = torch.log_softmax(truth * 1.0 + torch.randn(400, 4, generator=gen) * 1.2, 1)
    sharp_d = torch.log_softmax(truth * 4.0 + torch.randn(400, 4, generator=gen), 1)
    useless_d = torch.log_softmax(torch.randn(400, 4, generator=gen), 1)
    weight, scores = fit_merge_weight(noisy_c, sharp_d, labels)
    assert weight > 0 and scores[weight] > scores[0.0]
    assert fit_merge_weight(sharp_d, useless_d, labels)[0] == 0.0


def test_strong_view_shifts_cuts_and_changes_contrast() -> None:
    from models.triple.augment import strong_view

    x = torch.full((64, 1, 28, 28), 0.8)
    gen = torch.Generator().manual_seed(0)
    out = strong_view(x, gen, hflip=True, max_shift=4, cutout=10, contrast=0.4)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    background = (out == -1.0).flatten(1).sum(1)
    assert (background > 0).all()  # every image lost a border strip or a square
    levels = out.amax(dim=(1, 2, 3))
    assert levels.std() > 0.01  # contrast differs between images
    again = strong_view(x, torch.Generator().manual_seed(0), True, 4, 10, 0.4)
    assert torch.equal(out, again)  # seeded


def test_randaugment_view_draws_operations_per_image_and_cuts_out() -> None:
    from models.triple.augment import randaugment_view

    gen = torch.Generator().manual_seed(0)
    x = torch.full((64, 1, 28, 28), -1.0)
    x[:, :, 6:22, 8:20] = 0.6  # a bright garment-like block on the background
    out = randaugment_view(x, gen, hflip=True, ops=2, cutout=14)
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    changed = (out != x).flatten(1).any(1)
    assert changed.all()
    # each image its own draw: the images differ from one another
    assert len({tuple(o.flatten().tolist()) for o in out}) > 50
    again = randaugment_view(x, torch.Generator().manual_seed(0), True, 2, 14)
    assert torch.equal(out, again)  # seeded


def test_cut_out_sets_one_square_per_image_to_the_background() -> None:
    from models.triple.augment import _cut_out

    x = torch.full((32, 1, 28, 28), 0.6)
    cut = (_cut_out(x, torch.Generator().manual_seed(0), 14) == -1.0).flatten(1).sum(1)
    assert cut.min() >= 8 * 8 and cut.max() <= 15 * 15  # clipped at a corner, or whole
    assert torch.equal(_cut_out(x, torch.Generator(), 0), x)


def test_randaugment_operations_do_what_they_are_named() -> None:
    from models.triple.augment import RANDAUGMENT_OPS, _intensity, _warp

    x = torch.full((4, 1, 28, 28), -1.0)
    x[:, :, 10:18, 4:12] = 0.5  # intensity 0.75 in [0, 1]
    op = lambda name: torch.full((4,), RANDAUGMENT_OPS.index(name))  # noqa: E731
    level = torch.full((4,), 0.99)
    # a geometric op leaves intensities alone, an intensity op leaves the geometry alone
    assert torch.equal(_intensity(x, op("rotate"), level), x)
    assert torch.equal(_warp(x, op("solarize"), level), x)
    assert torch.allclose(_intensity(x, op("identity"), level), x)
    moved = _warp(x, op("translate_x"), torch.full((4,), 0.5))  # 15 % of the side: 4.2 px
    assert moved[0, 0, 14, 0:7].gt(0).all() and moved[0, 0, 14, 8:12].lt(-0.9).all()
    solar = _intensity(x, op("solarize"), level)  # threshold 0.01: bright pixels invert
    assert torch.allclose(solar[0, 0, 14, 6], torch.tensor(-0.5))
    dim = _intensity(x, op("brightness"), torch.zeros(4))  # factor 0.05
    assert torch.allclose(dim[0, 0, 14, 6], torch.tensor(0.75 * 0.05 * 2 - 1), atol=1e-6)
    poster = _intensity(x, op("posterize"), level)  # 4 bits: multiples of 16 / 255
    u = (poster + 1) / 2 * 255
    assert torch.allclose(u, (u / 16).round() * 16, atol=1e-3)


def test_pseudo_label_term_counts_only_confident_rows() -> None:
    from models.tree.merge import TreeTensors

    tt = TreeTensors(TREE)
    logits = [torch.zeros(4, n) for n in TREE.level_sizes]
    targets = torch.as_tensor(TREE.leaf_paths[[0, 1, 2, 3]])
    full = losses.masked_path_nll(logits, targets, torch.ones(4), tt, [1.0, 1.0, 1.0])
    half = losses.masked_path_nll(logits, targets, torch.tensor([1.0, 1, 0, 0]), tt, [1.0] * 3)
    none = losses.masked_path_nll(logits, targets, torch.zeros(4), tt, [1.0] * 3)
    assert float(none) == 0.0 and 0 < float(half) < float(full)


def test_real_pairs_with_weight_zero_do_not_count() -> None:
    pair = losses.PairLoss("hinge")
    s = torch.tensor([2.0, -3.0])
    assert float(pair.real(s, torch.tensor([1.0, 0.0]))) == 0.0
    assert float(pair.real(s, torch.tensor([1.0, 1.0]))) == pytest.approx(2.0)


def test_diversity_is_zero_for_one_image_per_leaf_and_about_one_for_the_data() -> None:
    from models.triple.pictures import leaf_spread, sample_diversity

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (400, 6, 6, 1), dtype=np.uint8)
    real_leaves = np.repeat(np.arange(4), 100)
    spread = leaf_spread(real, real_leaves, 4)
    collapsed = np.repeat(real[::100], 100, axis=0)  # one image per leaf, 100 times
    assert sample_diversity(collapsed, real_leaves, spread) == 0.0
    varied = sample_diversity(real[::2], real_leaves[::2], spread)
    assert 0.9 < varied < 1.1
