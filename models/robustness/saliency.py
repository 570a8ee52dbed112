"""What the classifier looks at: Integrated Gradients maps and nearest training neighbours.

Attributions are captum's ``IntegratedGradients`` on the merged model (:class:`MergedLeafModel`,
target = a leaf's log-probability, baseline = a black image). Neighbours are searched in the
classifier's own feature space (the shared neck's output, the input of every level head), by
cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.attacks.evasion import MergedLeafModel, input_gradients_only
from models.classifier.network import HierarchicalClassifier
from models.reporting.plots import figure_png, pyplot, show_image
from models.runtime.tensors import map_image_batches


def integrated_gradients(
    model: MergedLeafModel,
    x: np.ndarray,
    targets: np.ndarray,
    steps: int = 32,
    internal_batch_size: int = 256,
) -> np.ndarray:
    """``[N, C, H, W]`` IG attributions of ``log P(target leaf)`` for float images in [0, 1].

    Args:
        model: the merged model.
        x: float32 ``[N, C, H, W]`` in [0, 1].
        targets: ``[N]`` leaf index to explain per image.
        steps: Riemann steps of the path integral.
        internal_batch_size: images x steps evaluated per forward pass.
    """
    from captum.attr import IntegratedGradients

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    try:
        with input_gradients_only(model):
            attr = IntegratedGradients(model).attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                target=torch.as_tensor(targets, device=device),
                n_steps=steps,
                internal_batch_size=internal_batch_size,
            )
    finally:
        model.train(was_training)
    return attr.detach().cpu().numpy()


def saliency_grid_png(
    images: np.ndarray,
    attributions: np.ndarray,
    titles: Sequence[str],
    columns: int = 6,
    title: str = "",
) -> bytes:
    """PNG: each image beside its attribution map (red pushes towards the target, blue against).

    Args:
        images: uint8 ``[N, H, W, C]``.
        attributions: ``[N, C, H, W]`` (summed over channels for display).
        titles: one caption per image.
        columns: image/map pairs per row.
        title: figure title.
    """
    plt = pyplot()
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, 2 * columns, figsize=(2 * columns * 1.15, rows * 1.45))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, columns)
        img = images[i]
        a = attributions[i].sum(axis=0)
        bound = float(np.abs(a).max()) or 1.0
        show_image(axes[r, 2 * c], img, titles[i], fontsize=6)
        axes[r, 2 * c + 1].imshow(a, cmap="bwr", vmin=-bound, vmax=bound)
    return _titled_png(fig, title)


@torch.no_grad()
def neck_features(
    model: HierarchicalClassifier, images: np.ndarray, batch_size: int = 1024
) -> Tensor:
    """``[N, hidden]`` L2-normalised output of the shared neck for uint8 ``[N, H, W, C]`` images."""

    def normalised_neck(x: Tensor) -> Tensor:
        h = model.neck(model.backbone.features(x))
        return torch.nn.functional.normalize(h.float(), dim=1)

    return torch.cat(map_image_batches(model, normalised_neck, images, batch_size))


def nearest_neighbours(queries: Tensor, pool: Tensor, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``[Q, k]`` into ``pool`` of the most cosine-similar rows, and the similarities."""
    sims = queries @ pool.T
    top = sims.topk(min(k, pool.shape[0]), dim=1)
    return top.indices.cpu().numpy(), top.values.cpu().numpy()


def neighbours_png(
    queries: np.ndarray,
    query_titles: Sequence[str],
    pool: np.ndarray,
    indices: np.ndarray,
    pool_titles: Sequence[str],
    title: str = "",
) -> bytes:
    """PNG: one row per query image (left), then its nearest training images.

    Args:
        queries: uint8 ``[Q, H, W, C]``.
        query_titles: caption per query.
        pool: uint8 ``[P, H, W, C]`` training images.
        indices: ``[Q, k]`` indices into ``pool``.
        pool_titles: caption per pool image (e.g. its class).
        title: figure title.
    """
    plt = pyplot()
    q, k = indices.shape
    fig, axes = plt.subplots(q, k + 1, figsize=((k + 1) * 1.1, q * 1.2), squeeze=False)
    for r in range(q):
        for c in range(k + 1):
            ax = axes[r, c]
            img = queries[r] if c == 0 else pool[indices[r, c - 1]]
            title = query_titles[r] if c == 0 else pool_titles[indices[r, c - 1]]
            show_image(ax, img, title, fontsize=6)
            if c == 0:
                for spine in ax.spines.values():
                    spine.set_color("red")
    return _titled_png(fig, title)


def _titled_png(fig: Any, title: str) -> bytes:
    """Lay out a grid under a one-line title (kept clear of the top row) and render it."""
    if title:
        fig.suptitle(title, fontsize=9)
    top = 1.0 - (0.3 / fig.get_figheight() if title else 0.0)
    fig.tight_layout(pad=0.3, rect=(0.0, 0.0, 1.0, top))
    return figure_png(fig, dpi=90)
