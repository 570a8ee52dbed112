"""Common image corruptions at five severities, in the style of CIFAR-10-C and MNIST-C.

Hendrycks & Dietterich (2019) and Mu & Gilmer (2019) define the corruption families; the
severity parameters below follow CIFAR-10-C where a family exists there (noise, blur, contrast,
brightness, pixelate, JPEG) and MNIST-C's geometric ones otherwise. Geometry, blur, contrast and
resizing are torchvision's ``transforms.v2.functional``, JPEG is Pillow's codec; the noises are
drawn here from a seeded ``torch.Generator`` because torchvision's ``gaussian_noise`` takes no
generator, and brightness is additive (CIFAR-10-C adds to the HSV value) where torchvision's
multiplies.

Every corruption maps uint8 ``[N, H, W, C]`` to uint8 of the same shape, deterministically for a
given seed; severity 0 is the identity.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np
import torch
from torch import Tensor


def _tf() -> ModuleType:
    """The ``transforms.v2.functional`` module of torchvision, imported on first use.

    Importing torchvision pulls in ``torch._dynamo`` (about 1 s of every process's start-up on
    2 cores), and most processes that import this module (every pipeline CLI, the service)
    never corrupt an image.
    """
    from torchvision.transforms.v2 import functional

    return functional


SEVERITIES = (1, 2, 3, 4, 5)
Corruption = Callable[[Tensor, float, torch.Generator], Tensor]


def _gaussian_noise(x: Tensor, sigma: float, g: torch.Generator) -> Tensor:
    return x + sigma * torch.randn(x.shape, generator=g)


def _shot_noise(x: Tensor, photons: float, g: torch.Generator) -> Tensor:
    return torch.poisson(x * photons, generator=g) / photons


def _impulse_noise(x: Tensor, amount: float, g: torch.Generator) -> Tensor:
    hit = torch.rand(x.shape, generator=g) < amount
    salt = torch.rand(x.shape, generator=g) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def _speckle_noise(x: Tensor, sigma: float, g: torch.Generator) -> Tensor:
    return x + x * sigma * torch.randn(x.shape, generator=g)


def _gaussian_blur(x: Tensor, sigma: float, g: torch.Generator) -> Tensor:
    size = 2 * math.ceil(3 * sigma) + 1
    return _tf().gaussian_blur(x, kernel_size=[size, size], sigma=[sigma, sigma])


def _contrast(x: Tensor, factor: float, g: torch.Generator) -> Tensor:
    return _tf().adjust_contrast(x, factor)


def _brightness(x: Tensor, shift: float, g: torch.Generator) -> Tensor:
    return x + shift


def _random_signs(n: int, g: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (n,), generator=g).bool()


def _rotation(x: Tensor, degrees: float, g: torch.Generator) -> Tensor:
    out = x.clone()
    positive = _random_signs(len(x), g)
    for mask, angle in ((positive, degrees), (~positive, -degrees)):
        if mask.any():
            out[mask] = _tf().rotate(x[mask], angle, interpolation=_tf().InterpolationMode.BILINEAR)
    return out


def _shear(x: Tensor, degrees: float, g: torch.Generator) -> Tensor:
    out = x.clone()
    positive = _random_signs(len(x), g)
    for mask, s in ((positive, degrees), (~positive, -degrees)):
        if mask.any():
            out[mask] = _tf().affine(
                x[mask],
                angle=0.0,
                translate=[0, 0],
                scale=1.0,
                shear=[s, 0.0],
                interpolation=_tf().InterpolationMode.BILINEAR,
            )
    return out


def _translation(x: Tensor, pixels: float, g: torch.Generator) -> Tensor:
    # one of the 8 compass directions per image, ``pixels`` along each moving axis
    directions = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]
    which = torch.randint(0, len(directions), (len(x),), generator=g)
    out = x.clone()
    for i, (dx, dy) in enumerate(directions):
        mask = which == i
        if mask.any():
            out[mask] = _tf().affine(
                x[mask],
                angle=0.0,
                translate=[int(dx * pixels), int(dy * pixels)],
                scale=1.0,
                shear=[0.0, 0.0],
            )
    return out


def _zoom_out(x: Tensor, scale: float, g: torch.Generator) -> Tensor:
    return _tf().affine(
        x,
        angle=0.0,
        translate=[0, 0],
        scale=scale,
        shear=[0.0, 0.0],
        interpolation=_tf().InterpolationMode.BILINEAR,
    )


def _elastic(x: Tensor, alpha: float, g: torch.Generator) -> Tensor:
    # torchvision's ElasticTransform field (smoothed uniform noise, scaled by alpha / size),
    # drawn per image from the seeded generator and applied by elastic()
    h, w = x.shape[-2:]
    sigma = 3.0
    size = 2 * math.ceil(3 * sigma) + 1
    noise = torch.rand((len(x), 2, h, w), generator=g) * 2 - 1
    field = _tf().gaussian_blur(noise, kernel_size=[size, size], sigma=[sigma, sigma])
    field = field * torch.tensor([alpha / w, alpha / h])[None, :, None, None]
    out = torch.empty_like(x)
    for i in range(len(x)):
        out[i] = _tf().elastic(
            x[i], field[i].permute(1, 2, 0)[None], interpolation=_tf().InterpolationMode.BILINEAR
        )
    return out


def _pixelate(x: Tensor, factor: float, g: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    small = _tf().resize(x, [max(1, int(h * factor)), max(1, int(w * factor))], antialias=True)
    return _tf().resize(small, [h, w], interpolation=_tf().InterpolationMode.NEAREST)


def _jpeg(x: Tensor, quality: float, g: torch.Generator) -> Tensor:
    # Pillow's codec: torchvision's image encoders are deprecated since 0.29
    from PIL import Image

    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.empty_like(u8)
    for i, img in enumerate(u8):
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(
            buf, format="JPEG", quality=int(quality)
        )
        out[i] = np.asarray(Image.open(buf)).reshape(img.shape)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255.0


# name -> (function on float [N, C, H, W] in [0, 1], its parameter at severities 1..5)
CORRUPTIONS: dict[str, tuple[Corruption, tuple[float, ...]]] = {
    "gaussian_noise": (_gaussian_noise, (0.08, 0.12, 0.18, 0.26, 0.38)),
    "shot_noise": (_shot_noise, (60, 25, 12, 5, 3)),
    "impulse_noise": (_impulse_noise, (0.03, 0.06, 0.09, 0.17, 0.27)),
    "speckle_noise": (_speckle_noise, (0.15, 0.2, 0.35, 0.45, 0.6)),
    "gaussian_blur": (_gaussian_blur, (0.5, 0.75, 1.0, 1.25, 1.5)),
    "contrast": (_contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    "brightness": (_brightness, (0.1, 0.2, 0.3, 0.4, 0.5)),
    "rotation": (_rotation, (5, 10, 15, 20, 30)),
    "shear": (_shear, (5, 10, 15, 20, 25)),
    "translation": (_translation, (1, 2, 3, 4, 5)),
    "zoom_out": (_zoom_out, (0.9, 0.8, 0.7, 0.6, 0.5)),
    "elastic": (_elastic, (15, 25, 40, 55, 70)),
    "pixelate": (_pixelate, (0.9, 0.8, 0.7, 0.6, 0.5)),
    "jpeg": (_jpeg, (80, 65, 58, 50, 40)),
}


def check_corruptions(names: Sequence[str], severities: Sequence[int]) -> None:
    """Raise ``ValueError`` naming an unknown corruption or a severity outside 1..5."""
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; known: {', '.join(CORRUPTIONS)}")
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise ValueError(f"severities must be in {SEVERITIES}, got {bad}")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt uint8 ``[N, H, W, C]`` images; same shape and dtype, deterministic given ``seed``.

    Args:
        images: uint8 ``[N, H, W, C]``.
        name: a key of :data:`CORRUPTIONS`.
        severity: 0 (identity) to 5.
        seed: the random draws (noise, directions, elastic fields) follow from it and the name.

    Raises:
        ValueError: bad name, severity, dtype or shape.
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"corrupt({name!r}) expects uint8 [N, H, W, C] images, "
            f"got {images.dtype} of shape {images.shape}"
        )
    if severity == 0:
        check_corruptions([name], [])
        return images.copy()
    check_corruptions([name], [severity])
    fn, params = CORRUPTIONS[name]
    # each corruption gets its own stream, so adding one to a list does not change the others
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()) + severity)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255.0
    with torch.no_grad():
        out = fn(x, float(params[severity - 1]), g)
    out = (out.clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(out.permute(0, 2, 3, 1).numpy())
