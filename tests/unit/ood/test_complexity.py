"""The complexity-corrected pixel likelihood: compressed length, Gaussian density, difference."""

from __future__ import annotations

import io
import math
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from models.ood.complexity import (
    PixelGaussian,
    complexity_score,
    compressed_bits,
    fit_pixel_gaussian,
    gaussian_nll,
    pixel_view,
    png_sizes,
    served_complexity,
    zlib_sizes,
)


def saved_png_bits(img: np.ndarray) -> int:
    """What ``Image.save(format="PNG")`` writes for uint8 ``[H, W, C]``, in bits."""
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(buf, format="PNG")
    return 8 * len(buf.getvalue())


def test_png_lengths_are_the_encoded_size_and_grow_with_complexity() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1, 1, 28, 28)).astype(np.float32)
    blank = np.zeros((1, 1, 28, 28), np.float32)
    bits = compressed_bits(torch.from_numpy(np.concatenate([noise, blank])), "png")
    assert float(bits[0]) == saved_png_bits(noise[0].transpose(1, 2, 0).astype(np.uint8))
    assert bits[0] > 5 * bits[1]


def test_zlib_sizes_are_the_level_1_stream_of_the_pixels_and_grow_with_complexity() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1, 28, 28, 1), dtype=np.uint8)
    stripes = np.tile(np.array([0, 255], np.uint8), (28, 14))[None, :, :, None]
    blank = np.zeros((1, 28, 28, 1), np.uint8)
    colour = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    for img in (noise, stripes, blank):
        assert zlib_sizes(img).tolist() == [8 * len(zlib.compress(img[0].tobytes(), 1))]
    # channels interleaved as the PNG rows hold them
    assert zlib_sizes(colour).tolist() == [8 * len(zlib.compress(colour[0].tobytes(), 1))]
    sizes = zlib_sizes(np.concatenate([noise, stripes, blank]))
    assert sizes[0] > 5 * sizes[1] and sizes[1] > sizes[2]
    assert zlib_sizes(blank[:0]).shape == (0,)
    view = torch.from_numpy(noise).permute(0, 3, 1, 2).float()
    assert compressed_bits(view, "zlib").tolist() == sizes[:1].tolist()


def test_gaussian_nll_is_the_log_density() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = a @ a.T + torch.eye(4, dtype=torch.float64)
    mean = torch.randn(4, generator=g, dtype=torch.float64)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    expected = -torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    got = gaussian_nll(x, mean, torch.linalg.inv(cov), float(torch.logdet(cov)))
    torch.testing.assert_close(got, expected)
    var = cov.diagonal()  # a diagonal precision is a vector
    expected = -torch.distributions.Normal(mean, var.sqrt()).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_nll(x, mean, 1 / var, float(var.log().sum())), expected)


def test_fit_recovers_mean_and_covariance_plus_the_floor() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, 3, generator=g) * torch.tensor([1.0, 2.0, 3.0]) + 5
    mean, precision, logdet, compressor = fit_pixel_gaussian(x, variance_floor=1.0)
    assert compressor == "png"
    torch.testing.assert_close(mean, torch.full((3,), 5.0), atol=0.1, rtol=0)
    cov = torch.linalg.inv(precision.double())
    torch.testing.assert_close(
        cov.diagonal(), torch.tensor([2.0, 5.0, 10.0]).double(), rtol=0.05, atol=0
    )
    assert math.isclose(logdet, float(torch.logdet(cov)), rel_tol=1e-4)
    diag = fit_pixel_gaussian(x, 1.0, "diagonal", "zlib")
    assert diag.density == "diagonal" and diag.compressor == "zlib"
    assert diag.precision.shape == (3,)
    torch.testing.assert_close(diag.mean, mean)
    torch.testing.assert_close(1 / diag.precision.double(), cov.diagonal(), rtol=1e-3, atol=0)
    assert math.isclose(diag.logdet, float(cov.diagonal().log().sum()), rel_tol=1e-3)


def test_simple_images_are_not_in_distribution_just_for_being_simple() -> None:
    """A Gaussian fitted on textured images likes their smooth mean best; the correction not."""
    rng = np.random.default_rng(2)
    # "training images": a smooth blob with texture, mid-grey background
    yy, xx = np.mgrid[:28, :28]
    blob = 128 + 60 * np.exp(-((yy - 14) ** 2 + (xx - 14) ** 2) / 60.0)
    train = blob[None] + rng.normal(0, 20, (3000, 28, 28))
    x = torch.from_numpy(np.clip(train, 0, 255)).float()[:, None]
    test = x[:200]
    for density, compressor in (("full", "png"), ("diagonal", "zlib")):
        g = fit_pixel_gaussian(x.flatten(1), 4.0, density, compressor)
        blank = g.mean.round().reshape(1, 1, 28, 28).repeat(200, 1, 1, 1)  # the mode: no texture
        nll_in = gaussian_nll(test.flatten(1), g.mean, g.precision, g.logdet)
        nll_blank = gaussian_nll(blank.flatten(1), g.mean, g.precision, g.logdet)
        assert nll_blank.max() < nll_in.min()  # the plain likelihood prefers the plain mean
        s_in = complexity_score(test, g)
        s_blank = complexity_score(blank, g)
        assert s_blank.min() > s_in.max(), density  # corrected, the texture-less one is unusual


def test_pixel_view_pools_large_images_to_32() -> None:
    x = torch.zeros(2, 3, 64, 64)
    assert pixel_view(x).shape == (2, 3, 32, 32)
    assert float(pixel_view(torch.full((1, 1, 28, 28), -1.0)).max()) == 0.0
    assert float(pixel_view(torch.full((1, 1, 28, 28), 1.0)).min()) == 255.0


def test_png_sizes_are_those_pillow_saves() -> None:
    """Pillow's encoder without the file around it: the same bytes, grey or colour, any content."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:28, :28]
    smooth = (127 + 100 * np.sin(yy / 4.0) * np.cos(xx / 5.0)).astype(np.uint8)[..., None]
    batches = [
        rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8),  # noise: filters rarely help
        np.stack([smooth, 255 - smooth, np.zeros_like(smooth), np.full_like(smooth, 200)]),
        rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),  # colour, the largest served
        np.concatenate([smooth, 255 - smooth, smooth // 2], axis=2)[None],  # smooth colour
        rng.integers(0, 4, (2, 5, 5, 1), dtype=np.uint8),
        rng.integers(0, 256, (1, 40, 40, 3), dtype=np.uint8),  # over MAX_SIZE: saved in full
    ]
    for images in batches:
        assert png_sizes(images).tolist() == [saved_png_bits(img) for img in images]


@pytest.mark.parametrize(("density", "compressor"), [("full", "png"), ("diagonal", "zlib")])
def test_served_complexity_is_the_pixel_view_score(density: str, compressor: str) -> None:
    """Scored from uint8 directly (grey and colour: channels first, as the pixel view)."""
    rng = np.random.default_rng(5)
    for channels in (1, 3):
        images = rng.integers(0, 256, (4, 16, 16, channels), dtype=np.uint8)
        train = torch.from_numpy(rng.normal(128, 40, (500, channels * 256))).float()
        g = fit_pixel_gaussian(train, 4.0, density, compressor)  # type: ignore[arg-type]
        served = g._replace(mean=g.mean.numpy(), precision=g.precision.numpy())
        view = pixel_view(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0)
        expected = complexity_score(view, g)
        got = served_complexity(images, served)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5)
        one_by_one = [served_complexity(img[None], served) for img in images]
        np.testing.assert_allclose(np.concatenate(one_by_one), expected.numpy(), rtol=1e-5)
        assert served_complexity(images[:0], served).shape == (0,)


def test_a_pixel_gaussian_knows_its_density() -> None:
    assert PixelGaussian(np.zeros(3), np.ones(3), 0.0).density == "diagonal"
    assert PixelGaussian(np.zeros(3), np.eye(3), 0.0).density == "full"
    assert PixelGaussian(np.zeros(3), np.eye(3), 0.0).compressor == "png"  # older artifacts
