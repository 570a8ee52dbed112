"""The complexity-corrected pixel likelihood (Serrà et al. 2020, "Input complexity and OOD").

A density model fitted on the training images gives simple inputs (strokes on a black ground,
blank frames) a high likelihood only because they are simple, not because they look like the
training data. Serrà et al. correct it by the input's complexity, the length ``L(x)`` a generic
lossless compressor needs: ``S(x) = -log p(x) - L(x)``, in nats; S is large when the model
explains an image worse than the compressor does, small when it explains it better.

Here ``p`` is one Gaussian over the pixels of the training images (0..255 units, variance plus
``variance_floor``: a pixel that is 0 in every training image still has the spread of a few grey
levels), ``diagonal`` (the default) or with the ``full`` covariance, and ``L`` is the length of
the pixels' bytes under ``zlib`` at level 1 (the default), their PNG size (Pillow, default
zlib level: the compressor Serrà et al. use) or ``entropy``, an order-0 code length of their
differences that runs no coder (cheaper to serve, weaker on held-out classes:
``bench/results/ood_compressor_entropy_ab.md``). Images above 32 px are average-pooled to 32 px
first, so that a full precision matrix stays at most 3,072 x 3,072.

Why the cheap pair is the default (``bench/ood_guard_ab.py``: one guard per setting on the same
models and images, a paired bootstrap of the served score over both OOD benches' sets): inside
``knn_rmd_complexity`` it separated five sets better than the full Gaussian with PNG (held-out
Sandal 0.954 vs 0.951) and none worse, and it made the guard's served cost +0.32 instead of
+0.44 ms on a single-image ``/classify`` (the full product reads a 2.4 MB precision matrix;
Pillow's encoder tries five row filters before deflating). Alone it is the weaker detector
(held-out Sandal 0.847 vs 0.921): what the full covariance knows beyond the diagonal, the
neck's components know too.
"""

from __future__ import annotations

import io
import math
import zlib
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

MAX_SIZE = 32
LN2 = math.log(2.0)
LOG_2PI = math.log(2 * math.pi)
# a PNG of at most MAX_SIZE px: signature (8), IHDR (25), one IDAT chunk's length, type and CRC
# (12), IEND (12): everything but the zlib stream
PNG_FRAME_BYTES = 57
PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # what Image.fromarray makes of C channels
ZLIB_LEVEL = 1
Compressor = Literal["zlib", "png", "entropy"]
PixelDensity = Literal["diagonal", "full"]


class PixelGaussian(NamedTuple):
    """The fitted pixel density and the compressor the ``complexity`` component reads.

    ``precision`` is ``[D]`` for a diagonal Gaussian, ``[D, D]`` for a full one; tensors while
    fitting and in the guard, NumPy arrays in the serving path (:func:`served_complexity`).
    """

    mean: Any  # [D]
    precision: Any  # [D] or [D, D]
    logdet: float  # log det covariance
    compressor: Compressor = "png"  # artifacts from before the choice used PNG

    @property
    def density(self) -> PixelDensity:
        """``"diagonal"`` or ``"full"``, from the precision's shape."""
        return "diagonal" if self.precision.ndim == 1 else "full"


def pixel_view(x: Tensor) -> Tensor:
    """Model-range ``[B, C, H, W]`` -> ``[B, C, s, s]`` grey levels 0..255, ``s <= 32``."""
    u = (x.float() + 1.0) * 127.5
    if u.shape[-1] > MAX_SIZE:
        u = F.adaptive_avg_pool2d(u, MAX_SIZE)
    return u


def compressed_bits(pixels: Tensor, compressor: Compressor) -> Tensor:
    """``[B]`` compressed size in bits of ``[B, C, s, s]`` grey levels (rounded to uint8)."""
    u8 = pixels.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return torch.from_numpy(compressed_sizes(u8, compressor)).to(pixels.device)


def compressed_sizes(images: np.ndarray, compressor: Compressor) -> np.ndarray:
    """``[B]`` float32 sizes in bits of uint8 ``[B, s, s, C]`` images, by ``compressor``."""
    if compressor == "entropy":
        return entropy_sizes(images)
    return zlib_sizes(images) if compressor == "zlib" else png_sizes(images)


def entropy_sizes(images: np.ndarray) -> np.ndarray:
    """``[B]`` float32 lengths in bits of uint8 ``[B, s, s, C]`` images, no coder run.

    An order-0 code of their left-neighbour differences: the bytes in zlib's order (rows, then
    channels last), each minus the one before it modulo 256 (PNG's Sub filter; the first minus
    0), and the length of the best code for those differences' own histogram, ``sum_v c_v
    log2(n / c_v)`` over ``n`` bytes, ``c_v`` of value ``v``. Like zlib's it is short for blank
    frames and strokes on a flat ground and long for noise and texture; it is a bound, not a
    coder's output, so one image takes a compiled loop (``served_kernel.py``) instead of zlib's
    ~32 us after the network's forward pass.
    """
    flat = images.reshape(len(images), math.prod(images.shape[1:]))
    b, n = flat.shape
    if b == 0 or n == 0:
        return np.zeros(b, np.float32)
    diffs = np.empty_like(flat)
    diffs[:, 0] = flat[:, 0]
    np.subtract(flat[:, 1:], flat[:, :-1], out=diffs[:, 1:])  # uint8: modulo 256
    counts = np.bincount((diffs + 256 * np.arange(b)[:, None]).ravel(), minlength=256 * b)
    c = counts.reshape(b, 256).astype(np.float64)
    c_log_c = (c * np.log2(np.maximum(c, 1.0))).sum(1)
    return (n * math.log2(n) - c_log_c).astype(np.float32)


def zlib_sizes(images: np.ndarray) -> np.ndarray:
    """``[B]`` float32 sizes in bits of each uint8 ``[s, s, C]`` image's bytes under zlib level 1.

    The pixels as they are, no PNG row filters, no file around them: one Fashion-MNIST image
    47 us after a forward pass of the served int8 network, against Pillow's PNG 131 us (warm
    caches: 14 vs 37 us). Level 1 rather than zlib's default 6: 10 bytes longer on average on
    the Fashion-MNIST test split (467 bytes; at most 48), the default score's AUROC on every set
    of both OOD benches the same to 0.0015, and faster (14 vs 21 us warm).
    """
    return np.array([zlib_bits(img) for img in images], np.float32)


def zlib_bits(image: np.ndarray) -> int:
    """The size in bits of one uint8 ``[s, s, C]`` image's bytes under zlib (:func:`zlib_sizes`)."""
    return 8 * len(zlib.compress(image.tobytes(), ZLIB_LEVEL))


def png_sizes(images: np.ndarray) -> np.ndarray:
    """``[B]`` float32 PNG sizes in bits of uint8 ``[B, s, s, C]`` images.

    For images of at most ``MAX_SIZE`` px, the served uint8 input itself: the same bits as
    :func:`compressed_bits` (``"png"``) of its :func:`pixel_view`, without the round trip
    through float.

    The size is that of ``Image.save(format="PNG")``, from Pillow's own encoder without the file
    around it: a PNG of these images is a fixed ``PNG_FRAME_BYTES`` of signature and chunk
    framing around one zlib stream (Pillow's ``zip`` encoder: per-row adaptive filters, then
    deflate), which ``Image.tobytes("zip", mode)`` returns. One Fashion-MNIST image, each after
    a forward pass of the served int8 network (as when serving): 131 us instead of 190 us for
    ``save`` (warm caches: 44 vs 67 us). A unit test holds the two to the same byte.

    Raises:
        KeyError: images of more than 4 channels (no PNG mode holds them).
    """
    sizes = np.empty(len(images), np.float32)
    if len(images) == 0:
        return sizes
    _, height, width, channels = images.shape
    mode = PIL_MODES[channels]
    for i, img in enumerate(images):
        # frombuffer wraps the pixels where fromarray copies them (14 vs 28 us, one image)
        pil = Image.frombuffer(mode, (width, height), np.ascontiguousarray(img), "raw", mode, 0, 1)
        if max(height, width) <= MAX_SIZE:
            sizes[i] = 8 * (PNG_FRAME_BYTES + len(pil.tobytes("zip", mode)))
        else:  # a stream over Pillow's 64 KiB block would be split into several chunks
            buf = io.BytesIO()
            pil.save(buf, format="PNG")
            sizes[i] = 8 * buf.tell()
    return sizes


def served_complexity(images: np.ndarray, gaussian: PixelGaussian) -> np.ndarray:
    """``[B]`` :func:`complexity_score` of uint8 ``[B, H, W, C]`` images of at most ``MAX_SIZE`` px.

    The serving path (``gaussian`` holds NumPy arrays): their pixel view is the image itself, so
    the score is computed from the uint8 pixels directly, in NumPy (the service caps NumPy's BLAS
    threads at the worker's torch threads). A full precision's product is a matrix-vector
    product per image: 65 us with one BLAS thread against torch's 77 us for the 784 x 784 of
    Fashion-MNIST, each after a forward pass of the served int8 network; a diagonal one, a
    weighted sum of squares (17 us). The same numbers as :func:`complexity_score` of their
    :func:`pixel_view` up to float32 rounding.
    """
    mean, precision, logdet, compressor = gaussian
    d = images.transpose(0, 3, 1, 2).reshape(len(images), mean.size).astype(np.float32) - mean
    if precision.ndim == 1:
        quad = (d * d) @ precision
    else:
        quad = ((precision @ d.T).T * d).sum(1)  # precision is symmetric: d P d' per row
    nll = 0.5 * (quad + logdet + d.shape[1] * LOG_2PI)
    return nll - compressed_sizes(images, compressor) * LN2


def gaussian_nll(flat: Tensor, mean: Tensor, precision: Tensor, logdet: float) -> Tensor:
    """``[B]`` negative log density (nats) of ``[B, D]`` pixels under ``N(mean, precision^-1)``.

    ``precision``: ``[D, D]``, or ``[D]`` for a diagonal covariance.
    """
    d = flat - mean
    quad = (d * d) @ precision if precision.dim() == 1 else ((d @ precision) * d).sum(1)
    return 0.5 * (quad + logdet + d.shape[1] * LOG_2PI)


def complexity_score(pixels: Tensor, gaussian: PixelGaussian, bits: Tensor | None = None) -> Tensor:
    """``[B]`` ``S(x) = -log p(x) - L(x)`` (nats): higher = more unusual for its complexity.

    ``bits``: the compressed sizes when already known, else computed with the gaussian's
    compressor.
    """
    nll = gaussian_nll(pixels.flatten(1), gaussian.mean, gaussian.precision, gaussian.logdet)
    if bits is None:
        bits = compressed_bits(pixels, gaussian.compressor)
    return nll - bits * LN2


def fit_pixel_gaussian(
    flat: Tensor,
    variance_floor: float,
    density: PixelDensity = "full",
    compressor: Compressor = "png",
) -> PixelGaussian:
    """The pixel Gaussian of ``[N, D]`` training pixels (float32 mean and precision).

    The defaults are what guards fitted before the choice used (the full covariance, PNG);
    :class:`~models.ood.config.OodConfig`'s are ``diagonal`` and ``zlib``.
    """
    x = flat.double()
    mean = x.mean(0)
    centred = x - mean
    if density == "diagonal":
        var = centred.square().sum(0) / max(len(x) - 1, 1) + variance_floor
        logdet = float(var.log().sum())
        return PixelGaussian(mean.float(), (1.0 / var).float(), logdet, compressor)
    cov = centred.T @ centred / max(len(x) - 1, 1)
    cov = cov + variance_floor * torch.eye(len(cov), dtype=cov.dtype)
    precision = torch.linalg.inv(cov)
    precision = 0.5 * (precision + precision.T)
    logdet = float(torch.linalg.slogdet(cov).logabsdet)
    return PixelGaussian(mean.float(), precision.float(), logdet, compressor)
