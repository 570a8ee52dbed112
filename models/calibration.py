"""Calibration: one temperature per tree level, fitted on the validation split by NLL.

Level ``l``'s logits are divided by ``T_l`` before the conditional softmax, so ``T_l`` is fitted
on that level's conditional NLL given the true parent, independently of the other levels. The
merged leaf probability is then a product of calibrated conditionals. Temperature scaling never
changes a level's conditional ranking, so greedy decoding is unchanged; the global argmax over
leaves may move slightly (the product of differently tempered terms).

ECE is torchmetrics' ``MulticlassCalibrationError`` (15 bins, L1), the standard definition.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from models.merge import TreeTensors, conditional_log_probs, level_conditional_log_probs
from models.plots import figure_png, pyplot


def fit_temperatures(
    logits: list[Tensor], level_labels: Tensor, tt: TreeTensors, max_iter: int = 100
) -> Tensor:
    """``[depth]`` temperatures minimising each level's conditional NLL on held-out data.

    Args:
        logits: per-level ``[N, n_l]`` logits on the validation split.
        level_labels: ``[N, depth]`` true node per level.
        tt: the tree's tensors.
        max_iter: L-BFGS iterations per level.
    """
    temps = [
        _fit_level_temperature(z.detach().float(), level_labels[:, lv : lv + 1], tt, lv, max_iter)
        for lv, z in enumerate(logits)
    ]
    return torch.tensor(temps, device=logits[0].device)


def _fit_level_temperature(
    z: Tensor, y: Tensor, tt: TreeTensors, level: int, max_iter: int
) -> float:
    log_t = torch.zeros((), device=z.device, requires_grad=True)  # T = exp(log_t) > 0
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = -level_conditional_log_probs(z / log_t.exp(), tt, level).gather(1, y).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(log_t.detach().exp())


def conditional_nll(
    logits: list[Tensor], level_labels: Tensor, tt: TreeTensors, temperatures: Tensor | None = None
) -> list[float]:
    """Per-level conditional NLL (for reporting before/after calibration)."""
    if temperatures is not None:
        logits = [z / t for z, t in zip(logits, temperatures, strict=True)]
    cond = conditional_log_probs(logits, tt)
    return [float(-c.gather(1, level_labels[:, lv : lv + 1]).mean()) for lv, c in enumerate(cond)]


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """Top-label ECE (L1, equal-width bins) of ``[N, K]`` probabilities, via torchmetrics."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = probs.float().clamp_min(0)
    probs = probs / probs.sum(dim=1, keepdim=True)
    return float(
        multiclass_calibration_error(
            probs, labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1"
        )
    )


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (for the reliability diagram)."""
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1, device=probs.device)
    which = torch.bucketize(conf, edges[1:-1], right=True)
    counts = torch.bincount(which, minlength=n_bins).float()
    conf_sum = torch.zeros(n_bins, device=probs.device).index_add_(0, which, conf)
    acc_sum = torch.zeros(n_bins, device=probs.device).index_add_(0, which, correct)
    safe = counts.clamp_min(1)
    return {
        "edges": edges.cpu().numpy(),
        "confidence": (conf_sum / safe).cpu().numpy(),
        "accuracy": (acc_sum / safe).cpu().numpy(),
        "count": counts.cpu().numpy(),
    }


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
