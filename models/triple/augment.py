"""The strong view of an unlabelled image, for the pseudo-label consistency term.

The weak view is the classifier's own augmentation (random shifts of up to 2 px, flips); the
strong view (FixMatch's split, Sohn et al. 2020) is harder, so that agreeing with the teacher's
confident label on it is a real constraint. Two strong views (``gan.triple.strong_view``):

- ``shift-cutout`` (:func:`strong_view`): larger shifts, a cut-out square, a contrast change;
- ``randaugment`` (:func:`randaugment_view`): FixMatch's own, two RandAugment operations per
  image (rotations, shears, translations, brightness, contrast, sharpness, posterize,
  solarize) at random magnitudes, then a cut-out square.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from models.classifier.augment import augment_batch


def strong_view(
    x: Tensor,
    generator: torch.Generator,
    hflip: bool,
    max_shift: int = 4,
    cutout: int = 10,
    contrast: float = 0.4,
) -> Tensor:
    """``x`` (model range ``[B, C, H, W]``) shifted, flipped, cut out and contrast-changed.

    Args:
        x: images in [-1, 1].
        generator: the loop's generator (every draw is seeded).
        hflip: random horizontal flips.
        max_shift: random shifts up to this many pixels (zero-filled).
        cutout: side of one square per image set to the background (0: none).
        contrast: the foreground is scaled by a factor from ``[1 - contrast, 1 + contrast]``.
    """
    out = augment_batch(x, generator, hflip, max_shift)
    b = out.shape[0]
    device = out.device
    out = _cut_out(out, generator, cutout)
    if contrast > 0:
        scale = 1.0 + contrast * (2 * torch.rand(b, device=device, generator=generator) - 1)
        out = ((out + 1.0) * scale[:, None, None, None] - 1.0).clamp(-1.0, 1.0)
    return out


# RandAugment's operations (Cubuk et al. 2020) as FixMatch draws them (Sohn et al. 2020: two
# operations per image, each at a random magnitude, then a cut-out square), written for batches
# of grey images on the device: torchvision's RandAugment works on one image (or one shared draw
# per batch) and would run on the CPU in a Python loop. Geometry comes first, as one affine warp
# per round; the brightness operations act on [0, 1] intensities, the background at 0. Invert
# and equalize are left out: an inverted garment is not a garment (the OOD bench scores inverted
# images as out of distribution), and a histogram equalisation of a 28 x 28 image with a black
# background mostly brightens the background.
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
INTENSITY_OPS = ("identity", "brightness", "contrast", "sharpness", "posterize", "solarize")
RANDAUGMENT_OPS = GEOMETRIC_OPS + INTENSITY_OPS


def randaugment_view(
    x: Tensor,
    generator: torch.Generator,
    hflip: bool,
    ops: int = 2,
    cutout: int = 14,
) -> Tensor:
    """``x`` (model range ``[B, C, H, W]``) through ``ops`` random RandAugment operations each.

    Every image draws its own operations (uniformly from :data:`RANDAUGMENT_OPS`) and their
    magnitudes (uniform over each operation's range, FixMatch's variant), then a flip and one
    cut-out square of side ``cutout`` (0: none), set to the background.

    Args:
        x: images in [-1, 1].
        generator: the loop's generator (every draw is seeded).
        hflip: random horizontal flips.
        ops: operations per image.
        cutout: side of the cut-out square in pixels.
    """
    b = x.shape[0]
    dev = x.device
    out = x
    for _ in range(ops):
        op = torch.randint(0, len(RANDAUGMENT_OPS), (b,), device=dev, generator=generator)
        level = torch.rand(b, device=dev, generator=generator)  # [B] in [0, 1)
        out = _warp(out, op, 2 * level - 1)  # geometry: a signed magnitude in [-1, 1)
        out = _intensity(out, op, level)
    if hflip:
        flip = torch.rand(b, device=dev, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return _cut_out(out, generator, cutout)


def _warp(x: Tensor, op: Tensor, signed: Tensor) -> Tensor:
    """One affine warp per image: the geometric op it drew at magnitude ``signed`` in [-1, 1]."""
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    angle = signed * math.radians(30.0)  # rotate up to 30 degrees
    is_op = {name: op == RANDAUGMENT_OPS.index(name) for name in GEOMETRIC_OPS}
    rot = is_op["rotate"]
    theta[:, 0, 0] = torch.where(rot, torch.cos(angle), theta[:, 0, 0])
    theta[:, 0, 1] = torch.where(rot, -torch.sin(angle), theta[:, 0, 1])
    theta[:, 1, 0] = torch.where(rot, torch.sin(angle), theta[:, 1, 0])
    theta[:, 1, 1] = torch.where(rot, torch.cos(angle), theta[:, 1, 1])
    theta[:, 0, 1] = torch.where(is_op["shear_x"], 0.3 * signed, theta[:, 0, 1])  # shear <= 0.3
    theta[:, 1, 0] = torch.where(is_op["shear_y"], 0.3 * signed, theta[:, 1, 0])
    # translate up to 30 % of the side (affine_grid's coordinates span 2 per side)
    theta[:, 0, 2] = torch.where(is_op["translate_x"], 0.6 * signed, theta[:, 0, 2])
    theta[:, 1, 2] = torch.where(is_op["translate_y"], 0.6 * signed, theta[:, 1, 2])
    warped_rows = op < len(GEOMETRIC_OPS)  # no early exit: it would sync with the device
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # zero padding in [0, 1] intensities is the background (-1 in model range)
    warped = F.grid_sample(x + 1.0, grid, align_corners=False, padding_mode="zeros") - 1.0
    return torch.where(warped_rows[:, None, None, None], warped, x)


def _intensity(x: Tensor, op: Tensor, level: Tensor) -> Tensor:
    """The intensity op each image drew, at ``level`` in [0, 1); others pass unchanged."""
    u = (x + 1.0) / 2.0  # [B, C, H, W] in [0, 1]
    lv = level[:, None, None, None]

    def chosen(name: str) -> Tensor:
        return (op == RANDAUGMENT_OPS.index(name))[:, None, None, None]

    # brightness, contrast, sharpness: PIL's enhance factors in [0.05, 0.95] or [1.05, 1.95]
    factor = 1.0 + torch.where(lv < 0.5, -0.95 + 1.8 * lv, 0.05 + 1.8 * (lv - 0.5))
    mean = u.mean(dim=(1, 2, 3), keepdim=True)
    blurred = F.avg_pool2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    bits = 8 - (5 * lv).floor()  # posterize to 8, 7, 6, 5 or 4 bits
    step = 2.0 ** (8 - bits)
    u = torch.where(chosen("brightness"), u * factor, u)
    u = torch.where(chosen("contrast"), mean + (u - mean) * factor, u)
    u = torch.where(chosen("sharpness"), blurred + (u - blurred) * factor, u)
    u = torch.where(chosen("posterize"), torch.floor(u * 255.0 / step) * step / 255.0, u)
    u = torch.where(chosen("solarize") & (u >= 1.0 - lv), 1.0 - u, u)  # threshold 1 - level
    return u.clamp(0.0, 1.0) * 2.0 - 1.0


def _cut_out(x: Tensor, generator: torch.Generator, side: int) -> Tensor:
    """One square of ``side`` pixels per image, centred anywhere, set to the background."""
    if side <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (b, 1), device=dev, generator=generator)
    cx = torch.randint(0, w, (b, 1), device=dev, generator=generator)
    rows = (torch.arange(h, device=dev)[None] - cy).abs() <= side // 2  # [B, H]
    cols = (torch.arange(w, device=dev)[None] - cx).abs() <= side // 2  # [B, W]
    return x.masked_fill((rows[:, :, None] & cols[:, None, :])[:, None], -1.0)


# gan.triple.strong_view -> the view
STRONG_VIEWS = {"shift-cutout": strong_view, "randaugment": randaugment_view}
