"""The strong view of an unlabelled image, for the pseudo-label consistency term.

The weak view is the classifier's own augmentation (random shifts of up to 2 px, flips); the
strong view (FixMatch's split, Sohn et al. 2020) adds larger shifts, a cut-out square and a
contrast change, so that agreeing with the teacher's confident label on it is a real constraint.
"""

from __future__ import annotations

import torch
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
    b, _, h, w = out.shape
    device = out.device
    if cutout > 0:
        cy = torch.randint(0, h, (b, 1), device=device, generator=generator)
        cx = torch.randint(0, w, (b, 1), device=device, generator=generator)
        rows = (torch.arange(h, device=device)[None] - cy).abs() <= cutout // 2  # [B, H]
        cols = (torch.arange(w, device=device)[None] - cx).abs() <= cutout // 2  # [B, W]
        out = out.masked_fill((rows[:, :, None] & cols[:, None, :])[:, None], -1.0)
    if contrast > 0:
        scale = 1.0 + contrast * (2 * torch.rand(b, device=device, generator=generator) - 1)
        out = ((out + 1.0) * scale[:, None, None, None] - 1.0).clamp(-1.0, 1.0)
    return out
