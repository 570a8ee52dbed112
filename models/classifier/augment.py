"""Augmentation of training batches on the device: shifts, horizontal flips, random erasing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def augment_batch(x: Tensor, generator: torch.Generator, hflip: bool, max_shift: int = 2) -> Tensor:
    """Random integer shifts (zero-filled at the border, i.e. -1 in model range) and flips."""
    b = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device, generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), device=x.device, generator=generator)
    h, w = x.shape[-2:]
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]
    out = pad.gather(2, rows.expand(b, pad.shape[1], h, pad.shape[3]))
    out = out.gather(3, cols.expand(b, pad.shape[1], h, w))
    if hflip:
        flip = torch.rand(b, device=x.device, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


class ShiftFlip:
    """The loop's augmentation as a batch perturbation (see :class:`~.training.Perturbation`)."""

    def __init__(self, generator: torch.Generator, hflip: bool, max_shift: int = 2) -> None:
        self.generator = generator
        self.hflip = hflip
        self.max_shift = max_shift

    def __call__(self, x: Tensor, level_labels: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """Shifted and flipped images; labels unchanged."""
        return augment_batch(x, self.generator, self.hflip, self.max_shift), level_labels


def erase_batch(
    x: Tensor,
    generator: torch.Generator,
    probability: float,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
) -> Tensor:
    """Random erasing (Zhong et al. 2020): a random rectangle of random values per chosen image.

    Each image is erased with ``probability``; the rectangle covers a uniform ``area`` share of
    the image with a log-uniform ``aspect`` ratio, and is filled with uniform noise in [-1, 1].
    """
    b, _, h, w = x.shape
    dev = x.device

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, device=dev, generator=generator)

    s = uniform(*area) * h * w
    r = torch.exp(uniform(math.log(aspect[0]), math.log(aspect[1])))
    eh = torch.sqrt(s * r).round().clamp(1, h)
    ew = torch.sqrt(s / r).round().clamp(1, w)
    top = (uniform(0, 1) * (h - eh + 1)).floor()
    left = (uniform(0, 1) * (w - ew + 1)).floor()
    chosen = torch.rand(b, device=dev, generator=generator) < probability
    rows = torch.arange(h, device=dev)[None, :]
    cols = torch.arange(w, device=dev)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # [B, H]
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # [B, W]
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None])[:, None]
    noise = torch.rand(x.shape, device=dev, generator=generator) * 2 - 1
    return torch.where(mask, noise, x)


class RandomErasing:
    """Random erasing as a batch perturbation (after :class:`ShiftFlip` in the clean phase)."""

    def __init__(self, generator: torch.Generator, probability: float) -> None:
        self.generator = generator
        self.probability = probability

    def __call__(self, x: Tensor, level_labels: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """Images with random rectangles erased; labels unchanged."""
        return erase_batch(x, self.generator, self.probability), level_labels
