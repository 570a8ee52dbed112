"""Reliability diagrams: accuracy against confidence per bin, ECE in the title; per level too."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from models.calibration.ece import expected_calibration_error, reliability_bins
from models.reporting.plots import figure_png, pyplot
from models.tree.merge import TreeTensors, node_probs


def reliability_diagram_png(
    curves: dict[str, tuple[Tensor, Tensor]], title: str, n_bins: int = 15
) -> bytes:
    """PNG: accuracy vs confidence per bin for each named ``(probs, labels)``, with ECE."""
    return reliability_grid_png({"": curves}, title, n_bins)


def level_reliability_png(
    curves: dict[str, Tensor], leaf_labels: Tensor, tt: TreeTensors, title: str, n_bins: int = 15
) -> bytes:
    """PNG: one row per tree level (its marginal prediction), one column per named leaf-probs."""
    level_labels = tt.leaf_paths[leaf_labels]
    rows: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
    for level, name in enumerate(tt.tree.level_names):
        rows[name] = {
            curve: (node_probs(probs, tt, level), level_labels[:, level])
            for curve, probs in curves.items()
        }
    return reliability_grid_png(rows, title, n_bins)


def reliability_grid_png(
    rows: dict[str, dict[str, tuple[Tensor, Tensor]]], title: str, n_bins: int = 15
) -> bytes:
    """PNG: a grid of reliability diagrams, rows by name, each row's curves side by side."""
    plt = pyplot()
    n_cols = max(len(c) for c in rows.values())
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(4.2 * n_cols, 4.2 * len(rows)), squeeze=False
    )
    for row_axes, (row, curves) in zip(axes, rows.items(), strict=True):
        for ax, (name, (probs, labels)) in zip(row_axes, curves.items(), strict=False):
            _panel(ax, probs, labels, f"{row}: {name}" if row else name, n_bins)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


def _panel(ax: Any, probs: Tensor, labels: Tensor, name: str, n_bins: int) -> None:
    bins = reliability_bins(probs, labels, n_bins)
    centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    width = 1.0 / n_bins
    has = bins["count"] > 0
    ax.bar(
        centres[has], bins["accuracy"][has], width=width * 0.95, color="#4C72B0", label="accuracy"
    )
    ax.bar(
        centres[has],
        bins["confidence"][has] - bins["accuracy"][has],
        bottom=bins["accuracy"][has],
        width=width * 0.95,
        color="#DD8452",
        alpha=0.6,
        label="gap",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ece = expected_calibration_error(probs, labels, n_bins)
    ax.set_title(f"{name}: ECE {ece * 100:.2f}%")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
