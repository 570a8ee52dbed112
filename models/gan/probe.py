"""Feature quality: a linear probe on frozen discriminator features.

The probe is multinomial logistic regression fitted on training features and scored on the
validation split. It is always reported beside the same probe on a randomly initialised
discriminator of the same architecture: the gap is what GAN training bought.

The probe is written in torch (full-batch L-BFGS) rather than scikit-learn so that the core runs
on a machine with torch alone, and on the GPU when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from models.data.sharded import Dataset
from models.gan.networks import Discriminator, GanArchitecture, build_gan
from models.runtime.tensors import map_image_batches


@torch.no_grad()
def extract_features(
    discriminator: Discriminator, images: np.ndarray, batch_size: int = 1024
) -> Tensor:
    """``[N, H, W, C]`` uint8 -> ``[N, F]`` float32 features (eval mode), on the D's device."""
    features = map_image_batches(
        discriminator, lambda x: discriminator.features(x).float(), images, batch_size
    )
    return torch.cat(features)


def fit_linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    num_classes: int,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Standardise, then fit ``softmax(xW + b)`` by full-batch L-BFGS.

    Returns:
        ``(W, b, mean, std)``: predict with ``((x - mean) / std) @ W + b``.
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x = (train_x - mean) / std
    w = torch.zeros(x.shape[1], num_classes, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, train_y)
        loss = loss + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def probe_accuracy(
    discriminator: Discriminator,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    eval_images: np.ndarray,
    eval_labels: np.ndarray,
    num_classes: int | Sequence[int],
    max_iter: int = 200,
) -> float | list[float]:
    """Accuracy on ``eval_*`` of a linear probe fitted on ``train_*`` features.

    Args:
        discriminator: the feature extractor (left in the mode it was in).
        train_images: ``[N, H, W, C]`` uint8.
        train_labels: ``[N]`` labels, or ``[N, L]`` for one probe per column (tree level).
        eval_images: ``[M, H, W, C]`` uint8.
        eval_labels: ``[M]`` or ``[M, L]``, like ``train_labels``.
        num_classes: classes per column.
        max_iter: L-BFGS iterations of each probe.

    Returns:
        One accuracy, or one per column.
    """
    device = next(discriminator.parameters()).device
    train_x = extract_features(discriminator, train_images)
    eval_x = extract_features(discriminator, eval_images)
    single = np.ndim(train_labels) == 1
    ys, ys_eval = np.atleast_2d(train_labels.T).T, np.atleast_2d(eval_labels.T).T
    sizes = [num_classes] if isinstance(num_classes, int) else list(num_classes)
    accs = []
    for col, k in enumerate(sizes):
        y = torch.from_numpy(ys[:, col].astype(np.int64)).to(device)
        w, b, mean, std = fit_linear_probe(train_x, y, k, max_iter=max_iter)
        pred = (((eval_x - mean) / std) @ w + b).argmax(1).cpu().numpy()
        accs.append(float((pred == ys_eval[:, col]).mean()))
    return accs[0] if single else accs


def probe_levels(
    discriminator: Discriminator,
    arch: GanArchitecture,
    data: Dataset,
    train_size: int,
    random_inits: int,
    seed: int,
    max_iter: int = 200,
) -> dict[str, float]:
    """Linear probes per tree level: the trained D beside randomly initialised Ds.

    All are fitted on the same first ``train_size`` train images and scored on val; the random
    side is the mean over ``random_inits`` seeds (a single random init varies by about a point);
    each probe is fitted by at most ``max_iter`` L-BFGS iterations.

    Returns:
        ``probe_trained_<level>`` and ``probe_random_<level>`` accuracies.
    """
    train_x, train_y = data.head("train", train_size)
    val_x, val_y = data.split("val")
    tree = data.hierarchy
    args = (
        train_x,
        tree.all_level_labels(train_y),
        val_x,
        tree.all_level_labels(val_y),
        tree.level_sizes,
    )
    device = next(discriminator.parameters()).device
    trained = probe_accuracy(discriminator, *args, max_iter=max_iter)
    random = np.mean(
        [
            probe_accuracy(
                build_gan(arch, seed + 10_000 + i)[1].to(device), *args, max_iter=max_iter
            )
            for i in range(random_inits)
        ],
        axis=0,
    )
    levels = tree.level_names
    probes = {f"probe_trained_{lv}": float(a) for lv, a in zip(levels, trained, strict=True)}
    return probes | {f"probe_random_{lv}": float(a) for lv, a in zip(levels, random, strict=True)}
