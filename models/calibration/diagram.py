"""Reliability diagrams: accuracy against confidence per bin, with the ECE in the title."""

from __future__ import annotations

from torch import Tensor

from models.calibration.ece import expected_calibration_error, reliability_bins
from models.reporting.plots import figure_png, pyplot


def reliability_diagram_png(
    curves: dict[str, tuple[Tensor, Tensor]], title: str, n_bins: int = 15
) -> bytes:
    """PNG: accuracy vs confidence per bin for each named ``(probs, labels)``, with ECE."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 4.2), squeeze=False)
    for ax, (name, (probs, labels)) in zip(axes[0], curves.items(), strict=True):
        bins = reliability_bins(probs, labels, n_bins)
        centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
        width = 1.0 / n_bins
        has = bins["count"] > 0
        ax.bar(
            centres[has],
            bins["accuracy"][has],
            width=width * 0.95,
            color="#4C72B0",
            label="accuracy",
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
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)
