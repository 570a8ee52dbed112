"""uint8 images in, network outputs out: value ranges and batched no-grad passes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

T = TypeVar("T")


def to_model_range(images_u8: Tensor) -> Tensor:
    """uint8 ``[B, C, H, W]`` -> float in [-1, 1] (the generator's tanh range)."""
    return images_u8.float().div_(127.5).sub_(1.0)


def to_unit_range(images_u8: np.ndarray) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` -> float32 ``[N, C, H, W]`` in [0, 1] (the attacks' scale)."""
    return np.ascontiguousarray(images_u8.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def map_image_batches(
    module: nn.Module, fn: Callable[[Tensor], T], images: np.ndarray, batch_size: int
) -> list[T]:
    """``fn`` over batches of uint8 ``[N, H, W, C]`` images as model-range ``[B, C, H, W]``.

    Runs without gradients, on ``module``'s device, with ``module`` in eval mode (its mode is
    restored afterwards); returns one result per batch.
    """
    device = next(module.parameters()).device
    was_training = module.training
    if was_training:  # switching walks every submodule: only when needed (serving is in eval)
        module.eval()
    try:
        with torch.no_grad():
            return [
                fn(
                    to_model_range(
                        torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
                        .to(device)
                        .permute(0, 3, 1, 2)
                    )
                )
                for start in range(0, len(images), batch_size)
            ]
    finally:
        if was_training:
            module.train()


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters need no gradient inside the block (their flags are restored)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
