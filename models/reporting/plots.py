"""Matplotlib without a screen, figures as PNG bytes, and sample grids of images per class."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def pyplot() -> Any:
    """Matplotlib's pyplot on the headless Agg backend (the pipeline never opens a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def show_image(ax: Any, image: np.ndarray, title: str | None = None, **title_kw: Any) -> None:
    """Draw one uint8 ``[H, W, C]`` image on ``ax`` without ticks (gray for one channel)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255)
    if title is not None:
        ax.set_title(title, **title_kw)


def sample_grid_png(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    per_class: int = 8,
    seed: int = 0,
) -> bytes:
    """A PNG with one row per class and ``per_class`` random examples of it.

    Args:
        images: ``[N, H, W, C]`` uint8.
        labels: ``[N]`` class indices into ``class_names``.
        class_names: row titles.
        per_class: columns.
        seed: which examples are drawn.

    Returns:
        PNG bytes.
    """
    plt = pyplot()
    rng = np.random.default_rng(seed)
    n_rows = len(class_names)
    fig, axes = plt.subplots(
        n_rows, per_class, figsize=(per_class * 0.8 + 1.6, n_rows * 0.8), squeeze=False
    )
    for row, name in enumerate(class_names):
        members = np.flatnonzero(labels == row)
        picks = rng.choice(members, size=min(per_class, len(members)), replace=False)
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(picks):
                show_image(ax, images[picks[col]])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    return figure_png(fig, dpi=80)
