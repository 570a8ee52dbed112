"""Robustness of the calibrated hierarchical classifier: attacks, corruptions, pictures.

On a stratified subset of the test split:

* FGSM and PGD (L-inf, ``eps`` on [0, 1] pixels, ART, :mod:`models.attacks`), and AutoAttack
  where asked (``autoattack_eps``), against the merged leaf prediction; every level is scored
  from the adversarial images, and *graceful degradation* is the share of images whose coarse
  level is still right when the leaf is wrong;
* a CIFAR-10-C style corruption grid (:mod:`models.attacks.corruptions`): accuracy per level and
  fine ECE per corruption and severity;
* Integrated Gradients maps per class and for mistakes, and nearest training neighbours in the
  classifier's feature space (:mod:`models.robustness.saliency`).

Results are one JSON-able dict with flat headline keys (``robust_accuracy_fine_pgd_eps0.1``) that
a promotion gate can compare, plus PNG pictures and Markdown tables for the report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from models.attacks.corruptions import corrupt
from models.attacks.evasion import (
    MergedLeafModel,
    art_classifier,
    predict_leaf_log_probs,
    run_attack,
)
from models.classifier.io import TrainedClassifier
from models.classifier.network import HierarchicalClassifier
from models.robustness.config import FINE, RobustnessConfig, level_keys
from models.robustness.level_attack import attack_on_level, build_attack
from models.robustness.report import (
    adversarial_examples_png,
    attack_table,
    corruption_table,
    headline,
    robustness_curves_png,
)
from models.robustness.saliency import (
    integrated_gradients,
    nearest_neighbours,
    neck_features,
    neighbours_png,
    saliency_grid_png,
)
from models.robustness.scores import level_scores, stratified_subset
from models.runtime.device import prepare_device
from models.runtime.tensors import to_unit_range
from models.tree.hierarchy import Hierarchy
from models.tree.merge import TreeTensors

logger = logging.getLogger(__name__)


@dataclass
class RobustnessResult:
    """Numbers (JSON-able), pictures (PNG bytes) and Markdown tables of one evaluation."""

    metrics: dict[str, Any]
    pictures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)


@dataclass
class _Subset:
    """A stratified test subset as the attacks see it, and the clean prediction on it."""

    images: np.ndarray  # uint8 [N, H, W, C]
    x: np.ndarray  # float32 [N, C, H, W] in [0, 1]
    y: np.ndarray  # [N] leaves
    clean_log_probs: Tensor


def evaluate_robustness(
    classifier: TrainedClassifier,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    config: RobustnessConfig,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
) -> RobustnessResult:
    """Attack, corrupt and explain the calibrated classifier on stratified test subsets.

    Args:
        classifier: the calibrated classifier (its calibration maps are applied).
        test_images: uint8 ``[N, H, W, C]``.
        test_labels: ``[N]`` leaf labels.
        config: what to measure.
        train_images: for the nearest-neighbour pictures (skipped when ``None``).
        train_labels: their leaf labels.

    Returns:
        The results; ``metrics`` holds the flat headline keys and the detail per attack/corruption.
    """
    tree = classifier.tree
    tree.check_labels(test_labels, "robustness test labels")
    if config.gate.level not in level_keys(tree):
        raise ValueError(
            f"robustness.gate.level {config.gate.level!r} is not a level of the tree "
            f"{tree.name!r}; use one of {level_keys(tree)} ('fine' is the leaf level)"
        )
    device = prepare_device(config.device, config.num_threads)
    started = time.perf_counter()
    net = classifier.build(device)
    merged = MergedLeafModel(net, TreeTensors(tree, device), classifier.calibration).eval()
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    idx = stratified_subset(test_labels, config.attack_images, config.seed)
    x = to_unit_range(test_images[idx])
    subset = _Subset(test_images[idx], x, test_labels[idx], predict_leaf_log_probs(merged, x))
    attacks, worst_adv = _attack_grid(merged, subset, tree, config)
    level_attacks = _gated_level_attack(merged, subset, tree, config)
    seconds["attacks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cidx = stratified_subset(test_labels, config.corruption_images, config.seed + 1)
    corr_clean, corruptions = _corruption_grid(
        merged, test_images[cidx], test_labels[cidx], tree, config
    )
    seconds["corruptions"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    train = None if train_images is None or train_labels is None else (train_images, train_labels)
    pictures = _pictures(net, merged, subset, worst_adv, tree, config, train)
    seconds["explanations"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started

    metrics: dict[str, Any] = {
        "attack_images": int(len(idx)),
        "corruption_images": int(len(cidx)),
        "seed": config.seed,
        "eps": list(config.eps),
        "pgd_steps": config.pgd_steps,
        "pgd_step_size_ratio": config.pgd_step_ratio,
        "clean": level_scores(subset.clean_log_probs, subset.y, tree),
        "attacks": attacks,
        "level_attacks": level_attacks,
        "corruptions_clean": corr_clean,
        "corruptions": corruptions,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    return _with_headline_and_gate(metrics, pictures, tree, config)


def _with_headline_and_gate(
    metrics: dict[str, Any], pictures: dict[str, bytes], tree: Hierarchy, config: RobustnessConfig
) -> RobustnessResult:
    """Add the flat headline keys and the gate's verdict; draw the curves; write the tables."""
    names = level_keys(tree)
    metrics.update(headline(metrics, names))
    gate = config.gate
    metrics["gate"] = {
        "metric": gate.metric,
        "value": metrics.get(gate.metric),
        "min_accuracy": gate.min_accuracy,
        "passed": bool(metrics.get(gate.metric, -1.0) >= gate.min_accuracy),
    }
    pictures = {"robustness_curves": robustness_curves_png(metrics, names), **pictures}
    tables = {
        "attacks": attack_table(metrics, names),
        "corruptions": corruption_table(metrics, names),
    }
    return RobustnessResult(metrics=metrics, pictures=pictures, tables=tables)


def _attack_grid(
    merged: MergedLeafModel, subset: _Subset, tree: Hierarchy, config: RobustnessConfig
) -> tuple[dict[str, dict[str, dict[str, float]]], np.ndarray | None]:
    """Scores per attack and eps; the adversarial images of the last attack at the largest eps."""
    _, c, h, w = subset.x.shape
    estimator = art_classifier(merged, (c, h, w), next(merged.parameters()).device)
    attacks: dict[str, dict[str, dict[str, float]]] = {}
    worst_adv: np.ndarray | None = None
    grid = [(name, eps) for name in config.attacks for eps in config.eps]
    grid += [("autoattack", eps) for eps in config.autoattack_eps]
    for name, eps in grid:
        t0 = time.perf_counter()
        attack = build_attack(estimator, name, eps, config)
        adv = run_attack(attack, merged, subset.x, subset.y, config.seed)
        scores = level_scores(predict_leaf_log_probs(merged, adv), subset.y, tree)
        scores["max_linf"] = float(np.abs(adv - subset.x).max())
        if name == "autoattack":
            scores["seconds"] = time.perf_counter() - t0
        attacks.setdefault(name, {})[f"{eps:g}"] = scores
        logger.info("%s eps=%g: %s", name, eps, scores)
        if name == config.attacks[-1] and eps == max(config.eps):
            worst_adv = adv
    return attacks, worst_adv


def _gated_level_attack(
    merged: MergedLeafModel, subset: _Subset, tree: Hierarchy, config: RobustnessConfig
) -> list[dict[str, Any]]:
    """``[{"level", "attack", "eps", **scores}]``: the gated coarse level, attacked on its own loss.

    The gate's attack and eps aimed at that level (:mod:`models.robustness.level_attack`),
    measured whichever loss the gate reads (one attack more); empty when it reads the leaf.
    """
    gate = config.gate
    if gate.level == FINE:
        return []
    scores = attack_on_level(
        merged, subset.x, subset.y, tree, gate.level, gate.attack, gate.eps, config
    )
    logger.info("%s eps=%g on the %s's own loss: %s", gate.attack, gate.eps, gate.level, scores)
    return [{"level": gate.level, "attack": gate.attack, "eps": gate.eps, **scores}]


def _corruption_grid(
    merged: MergedLeafModel,
    images: np.ndarray,
    labels: np.ndarray,
    tree: Hierarchy,
    config: RobustnessConfig,
) -> tuple[dict[str, float], dict[str, dict[str, dict[str, float]]]]:
    """Clean scores, and scores per corruption and severity (with their mean over severities)."""
    clean = level_scores(predict_leaf_log_probs(merged, to_unit_range(images)), labels, tree)
    corruptions: dict[str, dict[str, dict[str, float]]] = {}
    for cname in config.corruptions:
        per: dict[str, dict[str, float]] = {}
        for severity in config.severities:
            xc = to_unit_range(corrupt(images, cname, severity, config.seed))
            per[str(severity)] = level_scores(predict_leaf_log_probs(merged, xc), labels, tree)
        per["mean"] = {
            k: float(np.mean([per[str(s)][k] for s in config.severities]))
            for k in per[str(config.severities[0])]
        }
        corruptions[cname] = per
        logger.info("corruption %s: mean %s", cname, per["mean"])
    return clean, corruptions


def _pictures(
    net: HierarchicalClassifier,
    merged: MergedLeafModel,
    subset: _Subset,
    worst_adv: np.ndarray | None,
    tree: Hierarchy,
    config: RobustnessConfig,
    train: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, bytes]:
    """Saliency maps, adversarial examples, and nearest training neighbours (when given)."""
    pictures = _saliency_pictures(merged, subset, tree, config)
    if worst_adv is not None:
        pictures["adversarial_examples"] = adversarial_examples_png(
            subset.images,
            worst_adv,
            subset.y,
            predict_leaf_log_probs(merged, worst_adv),
            tree,
            f"{config.attacks[-1]} eps={max(config.eps):g}",
            config.seed,
        )
    if train is not None:
        pictures["neighbours"] = _neighbours_picture(net, subset, tree, config, *train)
    return pictures


def _saliency_pictures(
    merged: MergedLeafModel, subset: _Subset, tree: Hierarchy, config: RobustnessConfig
) -> dict[str, bytes]:
    """Integrated Gradients maps: a few images per class, and misclassified ones."""
    pictures: dict[str, bytes] = {}
    y, lp, leaves = subset.y, subset.clean_log_probs, tree.leaves
    pred = lp.argmax(1).cpu().numpy()
    rng = np.random.default_rng(config.seed)
    if config.saliency_per_class:
        pick = np.concatenate(
            [
                rng.choice(
                    np.flatnonzero(y == c),
                    size=min(config.saliency_per_class, int((y == c).sum())),
                    replace=False,
                )
                for c in range(tree.num_leaves)
                if (y == c).any()
            ]
        )
        captions = [f"{leaves[y[i]]} ({np.exp(float(lp[i, y[i]])):.2f})" for i in pick]
        title = "Integrated Gradients towards the true leaf (red: evidence for, blue: against)"
        grid = _saliency_grid(merged, subset, pick, y[pick], captions, title, config.ig_steps)
        pictures["saliency_per_class"] = grid
    mistakes = np.flatnonzero(pred != y)
    if config.saliency_mistakes and len(mistakes):
        pick = rng.choice(
            mistakes, size=min(config.saliency_mistakes, len(mistakes)), replace=False
        )
        captions = [f"{leaves[y[i]]} -> {leaves[pred[i]]}" for i in pick]
        title = "Misclassified (true -> predicted): Integrated Gradients towards the prediction"
        grid = _saliency_grid(merged, subset, pick, pred[pick], captions, title, config.ig_steps)
        pictures["saliency_mistakes"] = grid
    return pictures


def _saliency_grid(
    merged: MergedLeafModel,
    subset: _Subset,
    pick: np.ndarray,
    targets: np.ndarray,
    captions: list[str],
    title: str,
    steps: int,
) -> bytes:
    """Integrated Gradients towards ``targets`` for the picked images, as one PNG grid."""
    attr = integrated_gradients(merged, subset.x[pick], targets, steps)
    return saliency_grid_png(subset.images[pick], attr, captions, title=title)


def _neighbours_picture(
    net: HierarchicalClassifier,
    subset: _Subset,
    tree: Hierarchy,
    config: RobustnessConfig,
    train_images: np.ndarray,
    train_labels: np.ndarray,
) -> bytes:
    """One test image per class (and a few mistakes) beside its nearest training images."""
    y, leaves = subset.y, tree.leaves
    pred = subset.clean_log_probs.argmax(1).cpu().numpy()
    pidx = stratified_subset(train_labels, config.neighbour_pool, config.seed)
    pool_feats = neck_features(net, train_images[pidx])
    queries = np.array(
        [np.flatnonzero(y == c)[0] for c in range(tree.num_leaves) if (y == c).any()]
    )
    extra = np.setdiff1d(np.flatnonzero(pred != y), queries)[: max(1, tree.num_leaves // 3)]
    queries = np.concatenate([queries, extra])
    near, _ = nearest_neighbours(
        neck_features(net, subset.images[queries]), pool_feats, config.neighbours
    )
    return neighbours_png(
        subset.images[queries],
        [
            f"{leaves[y[i]]}" + ("" if pred[i] == y[i] else f" -> {leaves[pred[i]]}")
            for i in queries
        ],
        train_images[pidx],
        near,
        [leaves[c] for c in train_labels[pidx]],
        title="Test images (left) and their nearest training images in the classifier's "
        "feature space",
    )
