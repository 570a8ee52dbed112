"""Augmentation of training batches on the device: random shifts and horizontal flips."""

from __future__ import annotations

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
