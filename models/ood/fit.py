"""Fit the guard on the training data, set its threshold on the validation split, score batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.classifier.io import TrainedClassifier
from models.classifier.network import HierarchicalClassifier
from models.gan.networks import Discriminator, GanArchitecture
from models.ood.complexity import fit_pixel_gaussian
from models.ood.config import OodConfig
from models.ood.guard import (
    BACKGROUND,
    KNN_LAYER,
    OodGuard,
    scorer_parts,
)
from models.ood.predictor import GuardedPredictor
from models.ood.scores import LAYERS, guarded_forward
from models.runtime.device import resolve_device
from models.runtime.quantize import QuantizationError
from models.runtime.tensors import map_image_batches
from models.tree.merge import TreeTensors, merged_log_probs

logger = logging.getLogger(__name__)


@dataclass
class GuardedScores:
    """One pass over a batch: leaf probabilities, every component and the served score."""

    leaf_probs: np.ndarray  # [N, n_leaves] calibrated
    components: dict[str, np.ndarray]  # name -> [N]
    score: np.ndarray  # [N]; NaN while the guard is being fitted
    layers: dict[str, np.ndarray] | None = None  # name -> [N, D] when asked for


@torch.inference_mode()
def score_images(
    classifier: TrainedClassifier,
    guard: OodGuard,
    images: np.ndarray,
    model: HierarchicalClassifier | None = None,
    batch_size: int = 512,
    every_component: bool = True,
    keep_layers: bool = False,
    tt: TreeTensors | None = None,
) -> GuardedScores:
    """Leaf probabilities and OOD scores of uint8 ``[N, H, W, C]`` images, in one pass.

    Args:
        classifier: the calibrated classifier.
        guard: its guard (statistics may be empty while fitting).
        images: checked uint8 images.
        model: the built network (default: built here).
        batch_size: images per pass.
        every_component: compute every component (evaluation); else only the served score's
            parts (serving: the discriminator runs only when the score reads it).
        keep_layers: also return the feature layers (fitting).
        tt: the tree's tensors on the model's device (built here when not given).
    """
    model = model or classifier.build()
    device = next(model.parameters()).device
    tt = tt or TreeTensors(classifier.tree, device)
    names = None if every_component else guard.parts
    discriminator = guard.discriminator if every_component or guard.needs_discriminator else None
    need_trunk = every_component or keep_layers or any(p.startswith("maha_trunk") for p in names)

    def run(x: torch.Tensor) -> tuple[Any, ...]:
        out = guarded_forward(model, discriminator, x, need_trunk=need_trunk)
        probs = merged_log_probs([z.float() for z in out.logits], tt, classifier.calibration)
        probs = probs.exp()
        comps = guard.components(out, tt, probs, names)
        layers = {k: v.cpu().numpy() for k, v in out.layers.items()} if keep_layers else None
        return probs.cpu().numpy(), {k: v.cpu().numpy() for k, v in comps.items()}, layers

    batches = map_image_batches(model, run, images, batch_size)
    comps = {k: np.concatenate([b[1][k] for b in batches]) for k in batches[0][1]}
    score = np.full(len(images), np.nan, np.float32)
    if all(p in comps for p in guard.parts) and (len(guard.parts) == 1 or guard.standardization):
        score = guard.combine({k: torch.from_numpy(v) for k, v in comps.items()}).numpy()
    layers = None
    if keep_layers:
        layers = {k: np.concatenate([b[2][k] for b in batches]) for k in batches[0][2]}
    return GuardedScores(np.concatenate([b[0] for b in batches]), comps, score, layers)


def discriminator_from_state(
    architecture: GanArchitecture, state: dict[str, torch.Tensor]
) -> Discriminator:
    """The pretrained GAN discriminator, eval mode (its real/fake head included)."""
    discriminator = Discriminator(architecture)
    discriminator.load_state_dict(state)
    return discriminator.eval()


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` indices with every label's share kept (sorted)."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        take = max(1, round(n * len(idx) / len(labels)))
        picked.append(rng.choice(idx, min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))


def fit_guard(
    classifier: TrainedClassifier,
    discriminator: Discriminator | None,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    config: OodConfig,
) -> tuple[OodGuard, GuardedScores]:
    """Gaussians on (a stratified subset of) the train split; standardisation and threshold on val.

    Returns:
        The guard, and the validation split's scores (every component).
    """
    device = resolve_device(config.device)
    model = classifier.build(device)
    tree = classifier.tree
    if BACKGROUND in tree.level_names:
        raise ValueError(f"a tree level named {BACKGROUND!r}: the OOD guard reserves that name")
    parts = scorer_parts(config.scorer, list(tree.level_names), discriminator is not None)
    idx = stratified_subset(train_labels, config.fit_images, config.seed)
    probe = OodGuard({}, None, "msp", ["msp"])
    fitted = score_images(
        classifier, probe, train_images[idx], model, config.batch_size, keep_layers=True
    )
    assert fitted.layers is not None
    level_labels = torch.from_numpy(tree.all_level_labels(train_labels[idx])).long()
    gaussians = layer_gaussians(
        fitted.layers, level_labels, list(tree.level_names), config.shrinkage
    )
    neighbours, k, neighbour_leaves = knn_bank(
        fitted.layers[KNN_LAYER], train_labels[idx], tree.num_leaves, config
    )
    pixel_gaussian = fit_pixel_gaussian(
        torch.from_numpy(fitted.layers["pixels"]),
        config.variance_floor,
        config.pixel_density,
        config.compressor,
    )
    guard = OodGuard(
        gaussians,
        discriminator,
        config.scorer,
        parts,
        neighbours=neighbours,
        knn_k=k,
        neighbour_leaves=neighbour_leaves,
        knn_leaves=config.knn_leaves,
        pixel_gaussian=pixel_gaussian,
    ).to(device)
    val = _fit_on_val(guard, classifier, model, val_images, config)
    guard.info = {
        "tpr": config.tpr,
        "fit_images": int(len(idx)),
        "val_images": int(len(val_images)),
        "val_flagged_share": round(float((val.score > guard.threshold).mean()), 5),
        "shrinkage": config.shrinkage,
        "knn_k": k,
        "knn_images": int(len(neighbours)),
        "knn_leaves": config.knn_leaves,
        "variance_floor": config.variance_floor,
        "pixels": f"{config.pixel_density} Gaussian, {config.compressor} length",
    }
    logger.info(
        "OOD guard (%s): threshold %.4g on %d val images (int8 runtimes: %s)",
        *(config.scorer, guard.threshold, len(val_images), guard.runtime_thresholds),
    )
    return guard, val


def knn_bank(
    features: np.ndarray, labels: np.ndarray, num_leaves: int, config: OodConfig
) -> tuple[Tensor, int, Tensor | None]:
    """The kNN scorer's bank: ``(neighbours [N, D], k, their leaves [N] or None)``.

    A stratified subset of the fitted images, their (neck) features L2-normalised; the leaves
    are kept when the search reads the most probable leaves' images only (``knn_leaves``).

    Raises:
        ValueError: a leaf with fewer than ``k`` bank images while ``knn_leaves`` is set.
    """
    bank = knn_bank_rows(labels, config)
    neighbours = torch.nn.functional.normalize(torch.from_numpy(features[bank]), dim=1)
    k = min(config.neighbours, len(neighbours))
    if config.knn_leaves is None:
        return neighbours, k, None
    leaves = torch.from_numpy(labels[bank]).long()
    fewest = int(torch.bincount(leaves, minlength=num_leaves).min())
    if fewest < k:
        raise ValueError(
            f"ood.knn_leaves: a leaf has {fewest} bank images, fewer than ood.neighbours={k}"
        )
    return neighbours, k, leaves


def knn_bank_rows(labels: np.ndarray, config: OodConfig) -> np.ndarray:
    """Which of the fitted images (``labels`` ``[N]``) the kNN bank holds: a stratified subset."""
    return stratified_subset(labels, config.knn_images, config.seed + 1)


def _fit_on_val(
    guard: OodGuard,
    classifier: TrainedClassifier,
    model: HierarchicalClassifier,
    val_images: np.ndarray,
    config: OodConfig,
) -> GuardedScores:
    """Set the guard's standardisation, threshold and int8 runtimes' thresholds on the val split.

    In place; the guard ends on the CPU. Returns the val split's scores (every component).
    """
    val = score_images(classifier, guard, val_images, model, config.batch_size)
    guard.standardization = {k: robust_standardization(v) for k, v in val.components.items()}
    val = replace(
        val,
        score=guard.combine({k: torch.from_numpy(v) for k, v in val.components.items()}).numpy(),
    )
    guard.threshold = float(np.quantile(val.score, config.tpr))
    guard.runtime_thresholds = runtime_thresholds(
        with_guard(classifier, guard.to("cpu")), val_images, config.tpr, config.runtime_thresholds
    )
    return val


def runtime_thresholds(
    classifier: TrainedClassifier, val_images: np.ndarray, tpr: float, runtimes: list[str]
) -> dict[str, float]:
    """``{quantization: threshold}``: the ``tpr`` quantile of val scored as each runtime serves.

    ``classifier`` carries its guard (float32 statistics and standardisation). An int8 network
    moves every component a little, so float32's threshold passes another share of val: the
    default model's guard flagged 5.2 % of val served ``static-int8``, 5.0 % at its own
    threshold. Each runtime is what :class:`GuardedPredictor` runs on the CPU. Skipped: one
    whose kernels this torch lacks (with a warning), and ``static-int8`` for a classifier without
    activation ranges (it would run ``dynamic-int8``). Set them after the ranges, as the train
    pipeline does (calibration, then the guard): ranges fitted later leave ``static-int8``'s
    threshold that of the old ranges.
    """
    thresholds = {}
    for runtime in runtimes:
        if runtime == "static-int8" and classifier.activation_ranges is None:
            logger.info("no OOD threshold for static-int8: the classifier has no activation ranges")
            continue
        try:
            predictor = GuardedPredictor(classifier, "cpu", runtime)  # type: ignore[arg-type]
        except QuantizationError as err:
            logger.warning("no OOD threshold for %s: %s", runtime, err)
            continue
        scores = [
            predictor.scores(val_images[i : i + 512])[1] for i in range(0, len(val_images), 512)
        ]
        thresholds[runtime] = float(np.quantile(np.concatenate(scores), tpr))
    return thresholds


def with_runtime_thresholds(
    classifier: TrainedClassifier, val_images: np.ndarray, runtimes: list[str] | None = None
) -> TrainedClassifier:
    """The classifier with its guard's int8 thresholds set (again) on ``val_images``.

    For a guard fitted before the thresholds existed, or after its activation ranges changed;
    the true-positive rate is the one its threshold was fitted at.

    Raises:
        ValueError: the classifier carries no guard.
    """
    guard = OodGuard.from_classifier(classifier)
    if guard is None:
        raise ValueError("the classifier carries no OOD guard")
    defaults = OodConfig()
    runtimes = list(defaults.runtime_thresholds) if runtimes is None else runtimes
    tpr = float(guard.info.get("tpr", defaults.tpr))
    guard.runtime_thresholds = runtime_thresholds(classifier, val_images, tpr, runtimes)
    return with_guard(classifier, guard)


def layer_gaussians(
    layers: dict[str, np.ndarray], level_labels: Tensor, level_names: list[str], shrinkage: float
) -> dict[str, tuple[Tensor, Tensor]]:
    """``{"<layer>.<level>": (means, precision)}`` per feature layer and tree level.

    Each layer also gets ``"<layer>.background"``: one Gaussian over all of its features, what
    the relative Mahalanobis distance subtracts.
    """
    gaussians = {}
    for layer in LAYERS:
        features = torch.from_numpy(layers[layer])
        per_level = fit_gaussians(features, level_labels, level_names, shrinkage)
        gaussians.update({f"{layer}.{level}": stats for level, stats in per_level.items()})
        everything = torch.zeros(len(features), 1, dtype=torch.long)
        background = fit_gaussians(features, everything, [BACKGROUND], shrinkage)
        gaussians[f"{layer}.{BACKGROUND}"] = background[BACKGROUND]
    return gaussians


def with_guard(classifier: TrainedClassifier, guard: OodGuard) -> TrainedClassifier:
    """A copy of ``classifier`` that carries ``guard`` (saved with it)."""
    state, meta = guard.to_artifact()
    return replace(classifier, ood_state=state, ood_info=meta, info=dict(classifier.info))


def with_scorer(
    guard: OodGuard, scorer: str, val_components: dict[str, np.ndarray], tpr: float
) -> OodGuard:
    """The same statistics serving another scorer, its threshold set on the same val scores.

    Float32's only: the int8 runtimes' thresholds (``runtime_thresholds``) are not carried over.
    """
    parts = scorer_parts(scorer, guard.levels, guard.discriminator is not None)
    if missing := [p for p in parts if p not in val_components]:
        raise ValueError(f"this guard cannot serve {scorer!r}: it has no {', '.join(missing)}")
    other = replace(guard, scorer=scorer, parts=parts, info=dict(guard.info), runtime_thresholds={})
    val_score = other.combine({k: torch.from_numpy(v) for k, v in val_components.items()})
    other.threshold = float(np.quantile(val_score.numpy(), tpr))
    return other


def fit_gaussians(
    features: Tensor, level_labels: Tensor, level_names: list[str], shrinkage: float
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per tree level: node means and one tied (within-class) precision of ``[N, D]`` features.

    Args:
        features: in-distribution features of one layer (float).
        level_labels: ``[N, depth]`` node index per level.
        level_names: the tree's level names.
        shrinkage: the covariance gets ``shrinkage * mean variance`` on its diagonal.
    """
    x = features.double()
    out = {}
    for lv, name in enumerate(level_names):
        labels = level_labels[:, lv]
        k = int(labels.max()) + 1
        counts = torch.bincount(labels, minlength=k).clamp_min(1).double()
        means = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, labels, x)
        means = means / counts[:, None]
        centred = x - means[labels]
        cov = centred.T @ centred / max(len(x) - k, 1)
        cov = cov + shrinkage * cov.diagonal().mean() * torch.eye(len(cov), dtype=cov.dtype)
        precision = torch.linalg.inv(cov)
        precision = 0.5 * (precision + precision.T)
        out[name] = (means.float(), precision.float())
    return out


def robust_standardization(values: np.ndarray) -> tuple[float, float]:
    """``(median, scale)``: the scale is the IQR / 1.349 (a normal's std), never zero."""
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    scale = float(q75 - q25) / 1.349
    return float(q50), scale if scale > 1e-12 else max(float(np.std(values)), 1e-6)
