"""The compiled one-image score (numba) gives the NumPy path's numbers; without numba, NumPy."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import models.ood.compiled as compiled
import models.ood.deflate_length as deflate_length
import models.ood.served_kernel as served_kernel
from models.ood.complexity import entropy_sizes
from models.ood.served_kernel import CompiledOneImage, one_image_score
from models.ood.served_score import ServedScore
from models.ood.served_statistics import first_stage_codes
from tests.toy_models import guarded_square_classifier
from tests.unit.ood.test_served_score import _images, _pass, _tolerance, _with_parts

needs_numba = pytest.mark.skipif(served_kernel.numba is None, reason="numba is not installed")


def _alone(scorer: ServedScore, neck, images, probs) -> np.ndarray:
    return np.concatenate(
        [scorer(neck[i : i + 1], images[i : i + 1], probs[i : i + 1]) for i in range(len(neck))]
    )


@needs_numba
@pytest.mark.parametrize(
    ("parts", "knn_images"),
    [
        (["knn", "rmd_neck_item", "complexity"], 200),  # the default: a leaf's two-stage search
        (["knn", "rmd_neck_item", "complexity"], 40),  # leaves of fewer images than candidates
        (["knn", "rmd_neck_category", "maha_neck_item", "complexity"], 200),
        (["rmd_neck_item", "complexity"], 200),  # no kNN part
        (["knn"], 200),  # no Gaussian part, no pixels
    ],
)
def test_the_compiled_score_is_the_numpy_score(noise_images, parts, knn_images) -> None:
    classifier, fitted, _ = guarded_square_classifier(
        "knn_rmd_complexity", knn_leaves=1, knn_images=knn_images
    )
    guard = _with_parts(fitted, parts)
    images = _images(noise_images)
    neck, comps, probs = _pass(classifier, guard, images)
    scorer = ServedScore(guard)
    assert scorer._compiled is not None
    compiled = _alone(scorer, neck, images, probs)
    numpy_path = copy.copy(scorer)
    numpy_path._compiled = None
    tolerance = _tolerance(guard, comps)
    assert (np.abs(compiled - _alone(numpy_path, neck, images, probs)) <= tolerance).all()
    assert (np.abs(compiled - scorer(neck, images, probs)) <= tolerance).all()  # the batch
    assert compiled.dtype == np.float32
    assert np.ptp(compiled) > 10 * tolerance.max()  # the check can tell


def test_without_numba_one_image_is_served_in_numpy(noise_images, monkeypatch) -> None:
    monkeypatch.setattr(served_kernel, "numba", None)
    classifier, fitted, _ = guarded_square_classifier("knn_rmd_complexity", knn_leaves=1)
    guard = _with_parts(fitted, fitted.parts)
    images = _images(noise_images)
    neck, comps, probs = _pass(classifier, guard, images)
    scorer = ServedScore(guard)
    assert scorer._compiled is None
    batch = scorer(neck, images, probs)
    assert (np.abs(_alone(scorer, neck, images, probs) - batch) <= _tolerance(guard, comps)).all()


@needs_numba
@pytest.mark.parametrize("agrees", [True, False])
def test_the_zlib_length_is_computed_where_it_is_zlibs(noise_images, monkeypatch, agrees) -> None:
    """In the kernel where it matches this process's zlib; where not (zlib-ng), zlib's call."""
    monkeypatch.setattr(deflate_length, "_agrees_with_zlib", lambda: agrees)
    classifier, fitted, _ = guarded_square_classifier(
        "knn_rmd_complexity", knn_leaves=1, knn_images=200
    )
    guard = _with_parts(fitted, fitted.parts)
    assert guard.pixel_gaussian is not None and guard.pixel_gaussian.compressor == "zlib"
    images = _images(noise_images)
    neck, comps, probs = _pass(classifier, guard, images)
    scorer = ServedScore(guard)
    assert scorer._compiled is not None and scorer._compiled.computes_length == agrees
    compiled = _alone(scorer, neck, images, probs)
    expected = guard.combine({p: comps[p] for p in guard.parts})  # zlib's lengths, in torch
    assert (np.abs(compiled - expected) <= _tolerance(guard, comps)).all()


@needs_numba
@pytest.mark.parametrize("compressor", ["entropy", "png"])
def test_other_lengths_are_compiled_too(noise_images, compressor) -> None:
    """The entropy length computed in the kernel, PNG's beside it: the NumPy path's numbers."""
    classifier, fitted, _ = guarded_square_classifier(
        "knn_rmd_complexity", knn_leaves=1, knn_images=200, compressor=compressor
    )
    guard = _with_parts(fitted, fitted.parts)
    images = _images(noise_images)
    neck, comps, probs = _pass(classifier, guard, images)
    scorer = ServedScore(guard)
    assert scorer._compiled is not None
    compiled = _alone(scorer, neck, images, probs)
    expected = guard.combine({p: comps[p] for p in guard.parts})  # in torch, batched
    assert (np.abs(compiled - expected) <= _tolerance(guard, comps)).all()
    assert np.ptp(compiled) > 10 * _tolerance(guard, comps).max()


def test_the_entropy_length_is_an_order_0_code_of_the_differences() -> None:
    images = np.zeros((4, 6, 5, 2), np.uint8)
    images[1] = 9  # one difference of 9 (the first byte), then zeros
    images[2, :, :, 1] = 255  # alternating 0, 255: differences 0, 255, 1, 255, 1, ...
    images[3] = np.random.default_rng(0).integers(0, 256, images.shape[1:])
    bits = entropy_sizes(images)
    n = 60
    assert bits[0] == 0.0  # a blank frame costs nothing
    assert bits[1] == pytest.approx(n * np.log2(n) - (n - 1) * np.log2(n - 1))
    assert bits[2] == pytest.approx(n * np.log2(n) - 29 * np.log2(29) - 30 * np.log2(30) - 0)
    assert bits[2] < bits[3] <= 8 * n
    assert entropy_sizes(images[:0]).shape == (0,)
    if served_kernel.numba is not None:  # the kernel's one image, the same length
        for image, expected in zip(images, bits, strict=True):
            assert served_kernel._entropy_bits(image.reshape(-1)) == pytest.approx(expected)


@needs_numba
def test_only_the_default_searches_and_a_diagonal_pixel_density_are_compiled() -> None:
    _, leaf_search, _ = guarded_square_classifier("knn_rmd_complexity", knn_leaves=1)
    assert ServedScore(_with_parts(leaf_search, leaf_search.parts))._compiled is not None
    _, two_leaves, _ = guarded_square_classifier("knn_rmd_complexity", knn_leaves=2)
    assert ServedScore(_with_parts(two_leaves, two_leaves.parts))._compiled is None
    _, whole_bank, _ = guarded_square_classifier("knn_rmd_complexity", knn_leaves=None)
    assert ServedScore(_with_parts(whole_bank, whole_bank.parts))._compiled is None
    _, full, _ = guarded_square_classifier(
        "knn_rmd_complexity", knn_leaves=1, pixel_density="full", compressor="png"
    )
    assert ServedScore(_with_parts(full, full.parts))._compiled is None
    pixels_only = _with_parts(leaf_search, ["complexity"])
    assert ServedScore(pixels_only)._compiled is None  # a handful of NumPy calls as it is


@needs_numba
def test_the_kernel_takes_the_kth_largest_of_the_leafs_candidates() -> None:
    """A direct check of the kNN part: k-th largest product among the first stage's top M."""
    rng = np.random.default_rng(0)
    dim, n = 8, 30
    bank = rng.standard_normal((n, dim)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    z = rng.standard_normal(dim).astype(np.float32)
    basis = np.eye(dim, dtype=np.float32)  # an exact first stage: its top M are the top M
    rows = np.arange(n, dtype=np.int64)
    no_pixels = np.zeros(0, np.uint8), np.zeros(0, np.float32), np.zeros(0, np.float32)
    no_length = np.zeros(0, np.uint8), served_kernel.NO_LENGTH, 0.0
    codes, step = first_stage_codes(np.ascontiguousarray(bank.T))  # int16, as served
    for k, m in ((1, 5), (3, 5), (2, 30)):
        score = one_image_score(
            z, np.zeros(dim, np.float32), basis, np.zeros(dim, np.float32), (0, 0),
            np.zeros((0, 2), np.int64), dim, codes, step, rows, bank,
            m, k, 2.0, *no_pixels, *no_length, 0.5,
        )  # fmt: skip
        kth = np.sort(bank @ z)[n - k]
        assert score == pytest.approx(0.5 + 2.0 * (1.0 - kth / np.linalg.norm(z)), rel=1e-5)


def test_computes_says_no_without_features() -> None:
    assert not CompiledOneImage.computes(None, None, None)


@needs_numba
def test_without_a_writable_cache_the_kernel_compiles_in_every_process(monkeypatch) -> None:
    real_njit = compiled.numba.njit

    def njit(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        return real_njit(**options)

    monkeypatch.setattr(compiled.numba, "njit", njit)

    def add_one(x):
        return x + 1

    jitted = compiled.jit(add_one)
    assert jitted is not add_one
    assert jitted(1) == 2
