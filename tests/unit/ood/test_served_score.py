"""The served score, computed at once in NumPy, gives the sum of the torch components."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from models.ood.guard import OodGuard
from models.ood.scores import guarded_forward, knn_distance
from models.ood.served_score import ServedScore, largest_indices
from models.runtime.tensors import to_model_range
from models.tree.merge import TreeTensors
from tests.toy_models import guarded_square_classifier, square_images


def _pass(classifier, guard: OodGuard, images: np.ndarray):
    """The neck features, every component of ``guard`` in torch, and the leaf probabilities
    (the leaf logits' softmax: any will do) of one pass."""
    model = classifier.build()
    x = to_model_range(torch.from_numpy(images).permute(0, 3, 1, 2))
    with torch.inference_mode():
        out = guarded_forward(model, None, x)
        probs = torch.softmax(out.logits[-1].float(), 1)
        comps = guard.components(out, TreeTensors(classifier.tree, "cpu"), probs)
    comps = {k: v.numpy() for k, v in comps.items()}
    return out.layers["neck"].float().numpy(), comps, probs.numpy()


def _tolerance(guard: OodGuard, comps: dict[str, np.ndarray]) -> np.ndarray:
    """Float32 rounding of the served sum, per image, in the score's units.

    A Mahalanobis distance's expansion ``z'Pz - 2m'Pz + m'Pm`` cancels terms larger than it is
    (a relative one is the difference of two); the kNN distance is 1 - a cosine near 1; the
    pixel term sums 784 squares.
    """
    scale = {p: 1.0 if len(guard.parts) == 1 else guard.standardization[p][1] for p in guard.parts}
    background = comps["maha_neck_background"]
    tol = np.full(len(background), 1e-5)
    for part in guard.parts:
        if part == "knn":
            size = np.full(len(background), 64 * 2.0**-24)
        elif part == "complexity":
            size = 1e-5 * np.abs(comps["complexity"]) + 1e-3
        else:
            level = part.split("_", 2)[2]
            size = 1e-4 * (comps[f"maha_neck_{level}"] + background) + 1e-3
        tol += size / scale[part]
    return tol


def _with_parts(guard: OodGuard, parts: list[str], coarse: bool = True) -> OodGuard:
    served = copy.deepcopy(guard)
    served.parts = parts
    if coarse:
        served.use_coarse_search()  # the served two-stage kNN search
    return served


def _images(noise_images: np.ndarray) -> np.ndarray:
    return np.concatenate([square_images(30, seed=9)[0], noise_images[:30]])


@pytest.mark.parametrize(
    "parts",
    [
        ["knn", "rmd_neck_item", "complexity"],  # the default scorer
        ["knn", "rmd_neck_category", "rmd_neck_item", "maha_neck_group", "complexity"],
        ["rmd_neck_item", "complexity"],
        ["knn", "maha_neck_item"],
        ["maha_neck_item"],  # one component: served as it is, not standardised
        ["knn"],
        ["complexity"],
    ],
)
@pytest.mark.parametrize("coarse", [True, False])
def test_the_served_score_is_the_sum_of_the_components(
    toy_guarded, noise_images, parts, coarse
) -> None:
    classifier, fitted, _ = toy_guarded
    guard = _with_parts(fitted, parts, coarse)
    assert ServedScore.serves(guard, (28, 28, 1))
    images = _images(noise_images)
    neck, comps, probs = _pass(classifier, guard, images)
    expected = guard.combine({p: comps[p] for p in parts})
    scorer = ServedScore(guard)
    served = scorer(neck, images, probs)
    assert served.dtype == np.float32 and served.shape == (len(images),)
    assert (np.abs(served - expected) <= _tolerance(guard, comps)).all()
    assert np.ptp(expected) > 10 * _tolerance(guard, comps).max()  # the check can tell
    # one image at a time (the served single image: its own 1-D path)
    alone = [scorer(neck[i : i + 1], images[i : i + 1], probs[i : i + 1]) for i in range(8)]
    assert all(a.dtype == np.float32 and a.shape == (1,) for a in alone)
    assert (np.abs(np.concatenate(alone) - expected[:8]) <= _tolerance(guard, comps)[:8]).all()


@pytest.mark.parametrize(
    ("leaves", "coarse"), [(1, True), (1, False), (2, True), (None, True), (None, False)]
)
def test_one_image_at_a_time_is_the_batch(noise_images, leaves, coarse) -> None:
    """Every kNN search (a leaf's bank in two stages, 1-D; otherwise as a batch of one)."""
    classifier, fitted, _ = guarded_square_classifier("knn_rmd_complexity", knn_leaves=leaves)
    guard = _with_parts(fitted, fitted.parts, coarse)
    images = _images(noise_images)
    neck, comps, probs = _pass(classifier, guard, images)
    served = ServedScore(guard)
    batch = served(neck, images, probs)
    alone = np.concatenate(
        [served(neck[i : i + 1], images[i : i + 1], probs[i : i + 1]) for i in range(len(images))]
    )
    # a matrix-vector product rounds otherwise than a matrix product
    assert (np.abs(alone - batch) <= _tolerance(guard, comps)).all()
    assert np.ptp(batch) > 10 * _tolerance(guard, comps).max()
    assert served(neck[:0], images[:0], probs[:0]).shape == (0,)


def test_a_full_gaussian_with_png_lengths_is_served(noise_images) -> None:
    """The pixel component as guards fitted before the diagonal + zlib default computed it."""
    classifier, fitted, _ = guarded_square_classifier(pixel_density="full", compressor="png")
    guard = _with_parts(fitted, ["knn", "complexity"])
    images = _images(noise_images)
    neck, comps, probs = _pass(classifier, guard, images)
    expected = guard.combine({p: comps[p] for p in guard.parts})
    served = ServedScore(guard)(neck, images, probs)
    assert (np.abs(served - expected) <= _tolerance(guard, comps)).all()


def test_only_neck_and_pixel_scores_are_served(toy_guarded) -> None:
    _, fitted, _ = toy_guarded
    for parts in (["maha_trunk_item"], ["knn", "energy"], ["msp"], ["maha_neck_nolevel"], []):
        assert not ServedScore.serves(_with_parts(fitted, parts, coarse=False)), parts
    guard = _with_parts(fitted, ["knn", "complexity"], coarse=False)
    assert ServedScore.serves(guard, (32, 32, 3))
    assert not ServedScore.serves(guard, (64, 64, 1))  # the pixel view is pooled: not the input
    without_bank = copy.copy(guard)
    without_bank.neighbours = None
    assert not ServedScore.serves(without_bank)
    without_pixels = copy.copy(guard)
    without_pixels.pixel_gaussian = None
    assert not ServedScore.serves(without_pixels)
    with pytest.raises(ValueError, match=r"does not compute \['msp'\]"):
        ServedScore(_with_parts(fitted, ["msp"], coarse=False))


@pytest.mark.parametrize(("n", "m"), [(5000, 96), (300, 40), (97, 96), (50, 10)])
def test_largest_indices_are_each_rows_m_largest(n: int, m: int) -> None:
    rng = np.random.default_rng(n)
    rows = rng.standard_normal((6, n)).astype(np.float32)
    rows[1] = np.round(rows[1])  # many equal values around the m-th place
    rows[2] = np.sort(rows[2])  # the largest at the end: a strided sample still bounds them
    rows[3] = 0.0  # every value equal
    picked = largest_indices(rows, m)
    assert picked.shape == (6, m)
    for row, idx in zip(rows, picked, strict=True):
        assert len(set(idx.tolist())) == m  # m distinct positions
        np.testing.assert_array_equal(np.sort(row[idx]), np.sort(row)[n - m :])


def test_largest_indices_fall_back_when_the_sample_drew_the_largest() -> None:
    # the strided sample (every 8th) holds all 20 of the largest values: its threshold lets
    # fewer than m through, so the row is partitioned whole
    row = np.zeros(800, np.float32)
    row[::8][:20] = np.arange(100, 120)
    row[1:8] = np.arange(50, 57)
    picked = largest_indices(row[None], 24)[0]
    np.testing.assert_array_equal(np.sort(row[picked]), np.sort(row)[-24:])


@pytest.mark.parametrize("coarse", [True, False])
@pytest.mark.parametrize("leaves", [1, 2])
def test_a_search_of_the_most_probable_leaves_is_served_as_fitted(
    noise_images, coarse, leaves
) -> None:
    classifier, fitted, _ = guarded_square_classifier(
        "knn_rmd_complexity", knn_leaves=leaves, knn_images=200
    )
    guard = _with_parts(fitted, fitted.parts, coarse)
    images = _images(noise_images)
    neck, comps, probs = _pass(classifier, guard, images)
    scorer = ServedScore(guard)
    served = scorer(neck, images, probs)  # a batch: grouped by its rows' leaves
    expected = guard.combine({p: comps[p] for p in guard.parts})
    assert (np.abs(served - expected) <= _tolerance(guard, comps)).all()
    alone = np.concatenate(
        [scorer(neck[i : i + 1], images[i : i + 1], probs[i : i + 1]) for i in range(9)]
    )
    assert (np.abs(alone - served[:9]) <= _tolerance(guard, comps)[:9]).all()
    # the search reads the most probable leaves' bank images only: farther than the whole bank
    everyone = knn_distance(torch.from_numpy(neck), guard.neighbours, guard.knn_k)
    assert (comps["knn"] >= everyone.numpy() - 1e-6).all()
    assert (comps["knn"] > everyone.numpy() + 1e-4).any()
    with pytest.raises(ValueError, match="leaf probabilities"):
        ServedScore(guard)(neck, images)


def test_a_leaf_search_needs_k_bank_images_in_every_leaf() -> None:
    with pytest.raises(ValueError, match="knn_leaves: a leaf has 1 bank images"):
        guarded_square_classifier("knn_rmd_complexity", knn_leaves=1, knn_images=4, neighbours=2)


def test_the_leaf_search_travels_with_the_artifact() -> None:
    _, guard, _ = guarded_square_classifier("knn_rmd_complexity", knn_leaves=2)
    loaded = OodGuard.from_artifact(*guard.to_artifact())
    assert loaded.knn_leaves == 2
    assert loaded.neighbour_leaves is not None
    assert torch.equal(loaded.neighbour_leaves, guard.neighbour_leaves)
    state, meta = guard.to_artifact()
    state["neighbour_leaves"] = state["neighbour_leaves"][:-1]
    with pytest.raises(ValueError, match="neighbour_leaves needs 400 leaves"):
        OodGuard.from_artifact(state, meta)
    state, meta = guard.to_artifact()  # an artifact from before the option: the whole bank
    del meta["neighbours"]["leaves"]
    assert OodGuard.from_artifact(state, meta).knn_leaves is None
