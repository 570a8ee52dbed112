"""Robustness of the calibrated hierarchical classifier: attacks, corruptions, pictures, a gate.

On a stratified subset of the test split:

* FGSM and PGD (L-inf, ``eps`` on [0, 1] pixels, ART, :mod:`models.attacks`) against the merged
  leaf prediction; every level is scored from the adversarial images, and *graceful degradation*
  is the share of images whose coarse level is still right when the leaf is wrong;
* a CIFAR-10-C style corruption grid (:mod:`models.corruptions`): accuracy per level and fine
  ECE per corruption and severity;
* Integrated Gradients maps per class and for mistakes, and nearest training neighbours in the
  classifier's feature space (:mod:`models.saliency`).

Results are one JSON-able dict with flat headline keys (``robust_accuracy_fine_pgd_eps0.1``) that
a promotion gate can compare, plus PNG pictures and Markdown tables for the report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from models.attacks import (
    ATTACKS,
    MergedLeafModel,
    art_classifier,
    make_attack,
    predict_leaf_log_probs,
    run_attack,
    to_unit_range,
)
from models.calibration import expected_calibration_error
from models.classifier_io import TrainedClassifier
from models.corruptions import CORRUPTIONS, check_corruptions, corrupt
from models.data import stratified_fraction
from models.device import configure_threads, resolve_device
from models.hierarchy import Hierarchy
from models.merge import TreeTensors
from models.plots import figure_png, pyplot
from models.saliency import (
    integrated_gradients,
    nearest_neighbours,
    neck_features,
    neighbours_png,
    saliency_grid_png,
)

logger = logging.getLogger(__name__)

FINE = "fine"


class RobustnessGateError(RuntimeError):
    """Robust accuracy is below the configured minimum; the message says which and by how much."""


class RobustnessGate(BaseModel):
    """The bound the pipeline enforces: accuracy of one level under one attack at one eps."""

    model_config = ConfigDict(extra="forbid")

    min_accuracy: float = Field(0.0, ge=0, le=1, description="fail below this robust accuracy")
    attack: Literal["fgsm", "pgd"] = "pgd"
    eps: float = Field(0.1, gt=0, le=1)
    level: str = Field(FINE, description="'fine' (the leaf) or a coarser level's name")

    @property
    def metric(self) -> str:
        """The flat result key the gate reads."""
        return robust_key(self.level, self.attack, self.eps)


class RobustnessConfig(BaseModel):
    """How robustness is measured (``robustness:`` in the train YAML)."""

    model_config = ConfigDict(extra="forbid")

    attacks: list[Literal["fgsm", "pgd"]] = Field(default_factory=lambda: list(ATTACKS))
    eps: list[float] = Field(
        default_factory=lambda: [0.02, 0.05, 0.1], description="L-inf radii on [0, 1] pixels"
    )
    pgd_steps: int = Field(10, ge=1)
    pgd_step_ratio: float = Field(0.25, gt=0, le=1, description="PGD step = ratio * eps")
    pgd_random_init: bool = True
    attack_images: int = Field(2000, ge=1, description="stratified test subset for the attacks")
    corruptions: list[str] = Field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    corruption_images: int = Field(2000, ge=1, description="stratified test subset, corruptions")
    saliency_per_class: int = Field(2, ge=0, description="IG maps per leaf class")
    saliency_mistakes: int = Field(12, ge=0, description="IG maps of misclassified images")
    ig_steps: int = Field(32, ge=2)
    neighbour_pool: int = Field(10000, ge=1, description="train images searched for neighbours")
    neighbours: int = Field(5, ge=1, description="neighbours shown per query")
    batch_size: int = Field(256, ge=1)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = Field(None, description="CPU threads; default: every core")
    gate: RobustnessGate = Field(default_factory=RobustnessGate)

    @model_validator(mode="after")
    def _consistent(self) -> RobustnessConfig:
        check_corruptions(self.corruptions, self.severities)
        if any(not 0 < e <= 1 for e in self.eps):
            raise ValueError(f"eps values must be in (0, 1] (pixels on [0, 1]), got {self.eps}")
        if self.gate.attack not in self.attacks or not any(
            abs(self.gate.eps - e) < 1e-12 for e in self.eps
        ):
            raise ValueError(
                f"gate reads {self.gate.attack} at eps={self.gate.eps}, which is not measured "
                f"(attacks {self.attacks}, eps {self.eps})"
            )
        return self


def robust_key(level: str, attack: str, eps: float) -> str:
    """``robust_accuracy_<level>_<attack>_eps<eps>``, e.g. ``robust_accuracy_fine_pgd_eps0.1``."""
    return f"robust_accuracy_{level}_{attack}_eps{eps:g}"


def level_keys(tree: Hierarchy) -> list[str]:
    """Result names of the levels: the coarse levels' names, then ``fine`` for the leaves."""
    return [*tree.level_names[:-1], FINE]


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``n`` labels, each class in proportion (all when ``n >= len``)."""
    return stratified_fraction(labels, min(1.0, n / max(1, len(labels))), seed)


def level_scores(log_probs: Tensor, labels: np.ndarray, tree: Hierarchy) -> dict[str, float]:
    """Accuracy per level of the merged prediction, graceful degradation and fine ECE.

    ``graceful_<level>``: among images whose leaf is wrong, the share whose node at that coarse
    level is right (NaN-free: 1.0 when no leaf is wrong).
    """
    pred = log_probs.argmax(1).cpu().numpy()
    paths = tree.leaf_paths
    names = level_keys(tree)
    wrong = pred != labels
    out: dict[str, float] = {}
    for level, name in enumerate(names):
        right = paths[pred, level] == paths[labels, level]
        out[f"accuracy_{name}"] = float(right.mean())
        if name != FINE:
            out[f"graceful_{name}"] = float(right[wrong].mean()) if wrong.any() else 1.0
    out["leaf_mistakes"] = int(wrong.sum())
    out["ece_fine"] = expected_calibration_error(
        log_probs.exp(), torch.from_numpy(labels).to(log_probs.device)
    )
    return out


@dataclass
class RobustnessResult:
    """Numbers (JSON-able), pictures (PNG bytes) and Markdown tables of one evaluation."""

    metrics: dict[str, Any]
    pictures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)


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
        classifier: the calibrated classifier (its temperatures are applied).
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
    device = resolve_device(config.device)
    if device.type == "cpu":
        configure_threads(config.num_threads)
    started = time.perf_counter()
    net = classifier.build(device)
    tt = TreeTensors(tree, device)
    merged = MergedLeafModel(net, tt, classifier.temperatures).eval()
    _, h, w, c = test_images.shape
    estimator = art_classifier(merged, (c, h, w), device)
    names = level_keys(tree)
    seconds: dict[str, float] = {}

    # ---- attacks
    t0 = time.perf_counter()
    idx = stratified_subset(test_labels, config.attack_images, config.seed)
    x, y = to_unit_range(test_images[idx]), test_labels[idx]
    clean_lp = predict_leaf_log_probs(merged, x)
    clean = level_scores(clean_lp, y, tree)
    attacks: dict[str, dict[str, dict[str, float]]] = {}
    worst_adv: np.ndarray | None = None
    for name in config.attacks:
        attacks[name] = {}
        for eps in config.eps:
            attack = make_attack(
                estimator,
                name,
                eps,
                steps=config.pgd_steps,
                step_ratio=config.pgd_step_ratio,
                random_init=config.pgd_random_init,
                batch_size=config.batch_size,
            )
            adv = run_attack(attack, merged, x, y, config.seed)
            scores = level_scores(predict_leaf_log_probs(merged, adv), y, tree)
            scores["max_linf"] = float(np.abs(adv - x).max())
            attacks[name][f"{eps:g}"] = scores
            logger.info("%s eps=%g: %s", name, eps, scores)
            if name == config.attacks[-1] and eps == max(config.eps):
                worst_adv = adv
    seconds["attacks"] = time.perf_counter() - t0

    # ---- corruptions
    t0 = time.perf_counter()
    cidx = stratified_subset(test_labels, config.corruption_images, config.seed + 1)
    cx, cy = test_images[cidx], test_labels[cidx]
    corr_clean = level_scores(predict_leaf_log_probs(merged, to_unit_range(cx)), cy, tree)
    corruptions: dict[str, dict[str, dict[str, float]]] = {}
    for cname in config.corruptions:
        per: dict[str, dict[str, float]] = {}
        for severity in config.severities:
            xc = to_unit_range(corrupt(cx, cname, severity, config.seed))
            per[str(severity)] = level_scores(predict_leaf_log_probs(merged, xc), cy, tree)
        per["mean"] = {
            k: float(np.mean([per[str(s)][k] for s in config.severities]))
            for k in per[str(config.severities[0])]
        }
        corruptions[cname] = per
        logger.info("corruption %s: mean %s", cname, per["mean"])
    seconds["corruptions"] = time.perf_counter() - t0

    # ---- pictures that explain
    t0 = time.perf_counter()
    pictures: dict[str, bytes] = {}
    pred = clean_lp.argmax(1).cpu().numpy()
    leaves = tree.leaves
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
        attr = integrated_gradients(merged, x[pick], y[pick], config.ig_steps)
        pictures["saliency_per_class"] = saliency_grid_png(
            test_images[idx][pick],
            attr,
            [f"{leaves[y[i]]} ({np.exp(float(clean_lp[i, y[i]])):.2f})" for i in pick],
            title="Integrated Gradients towards the true leaf (red: evidence for, blue: against)",
        )
    mistakes = np.flatnonzero(pred != y)
    if config.saliency_mistakes and len(mistakes):
        pick = rng.choice(
            mistakes, size=min(config.saliency_mistakes, len(mistakes)), replace=False
        )
        attr = integrated_gradients(merged, x[pick], pred[pick], config.ig_steps)
        pictures["saliency_mistakes"] = saliency_grid_png(
            test_images[idx][pick],
            attr,
            [f"{leaves[y[i]]} -> {leaves[pred[i]]}" for i in pick],
            title="Misclassified (true -> predicted): Integrated Gradients towards the prediction",
        )
    if worst_adv is not None:
        pictures["adversarial_examples"] = adversarial_examples_png(
            test_images[idx],
            worst_adv,
            y,
            predict_leaf_log_probs(merged, worst_adv),
            tree,
            f"{config.attacks[-1]} eps={max(config.eps):g}",
            config.seed,
        )
    if train_images is not None and train_labels is not None:
        pidx = stratified_subset(train_labels, config.neighbour_pool, config.seed)
        pool_feats = neck_features(net, train_images[pidx])
        queries = np.array(
            [np.flatnonzero(y == c)[0] for c in range(tree.num_leaves) if (y == c).any()]
        )
        extra = np.setdiff1d(mistakes, queries)[: max(1, tree.num_leaves // 3)]
        queries = np.concatenate([queries, extra])
        near, _ = nearest_neighbours(
            neck_features(net, test_images[idx][queries]), pool_feats, config.neighbours
        )
        pictures["neighbours"] = neighbours_png(
            test_images[idx][queries],
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
    seconds["explanations"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started

    metrics: dict[str, Any] = {
        "attack_images": int(len(idx)),
        "corruption_images": int(len(cidx)),
        "seed": config.seed,
        "eps": list(config.eps),
        "pgd_steps": config.pgd_steps,
        "pgd_step_size_ratio": config.pgd_step_ratio,
        "clean": clean,
        "attacks": attacks,
        "corruptions_clean": corr_clean,
        "corruptions": corruptions,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
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


def headline(metrics: dict[str, Any], names: list[str]) -> dict[str, float]:
    """Flat keys: clean and robust accuracy per level, graceful degradation, corruption means."""
    out: dict[str, float] = {}
    for name in names:
        out[f"clean_accuracy_{name}"] = metrics["clean"][f"accuracy_{name}"]
    for attack, per_eps in metrics["attacks"].items():
        for eps, scores in per_eps.items():
            for name in names:
                out[robust_key(name, attack, float(eps))] = scores[f"accuracy_{name}"]
                if name != FINE:
                    out[f"graceful_{name}_{attack}_eps{float(eps):g}"] = scores[f"graceful_{name}"]
    corr = metrics["corruptions"]
    if corr:
        for name in names:
            out[f"corruption_accuracy_{name}"] = float(
                np.mean([c["mean"][f"accuracy_{name}"] for c in corr.values()])
            )
        out["corruption_ece_fine"] = float(np.mean([c["mean"]["ece_fine"] for c in corr.values()]))
    return out


def check_gate(metrics: dict[str, Any], gate: RobustnessGate) -> str:
    """A one-line verdict when ``metrics`` meet the gate.

    Raises:
        RobustnessGateError: the gate's metric is missing or below ``min_accuracy``.
    """
    value = metrics.get(gate.metric)
    if value is None:
        measured = sorted(k for k in metrics if k.startswith("robust_accuracy_"))
        raise RobustnessGateError(
            f"robustness gate reads {gate.metric!r}, which was not measured; measured: {measured}"
        )
    if value < gate.min_accuracy:
        raise RobustnessGateError(
            f"robust accuracy too low: {gate.metric} = {value:.4f} < minimum "
            f"{gate.min_accuracy:.4f} ({gate.level} level under {gate.attack.upper()} at "
            f"eps={gate.eps:g} on {metrics.get('attack_images', '?')} test images); "
            "train with classifier.adversarial or lower robustness.gate.min_accuracy"
        )
    return f"{gate.metric} = {value:.4f} >= {gate.min_accuracy:.4f}"


def attack_table(metrics: dict[str, Any], names: list[str]) -> str:
    """Markdown: accuracy per level and graceful degradation, clean then each attack and eps."""
    coarse = [n for n in names if n != FINE]
    head = (
        "| attack | eps | "
        + " | ".join(f"acc {n}" for n in names)
        + " | "
        + " | ".join(f"{n} right when leaf wrong" for n in coarse)
        + " |\n|---|---|"
        + "---|" * (len(names) + len(coarse))
        + "\n"
    )

    def row(attack: str, eps: str, s: dict[str, float]) -> str:
        cells = [f"{s[f'accuracy_{n}']:.4f}" for n in names]
        cells += [f"{s[f'graceful_{n}']:.4f}" for n in coarse]
        return f"| {attack} | {eps} | " + " | ".join(cells) + " |\n"

    body = row("clean", "0", metrics["clean"])
    for attack, per_eps in metrics["attacks"].items():
        for eps, s in per_eps.items():
            body += row(attack, eps, s)
    return head + body


def corruption_table(metrics: dict[str, Any], names: list[str]) -> str:
    """Markdown: per corruption, mean accuracy per level and fine ECE over severities."""
    corr = metrics["corruptions"]
    sevs = list(next(iter(corr.values())))[:-1] if corr else []
    head = (
        "| corruption | "
        + " | ".join(f"mean acc {n}" for n in names)
        + " | mean ECE fine | "
        + " | ".join(f"fine @{s}" for s in sevs)
        + " |\n|---|"
        + "---|" * (len(names) + 1 + len(sevs))
        + "\n"
    )
    c0 = metrics["corruptions_clean"]
    body = (
        "| (clean) | "
        + " | ".join(f"{c0[f'accuracy_{n}']:.4f}" for n in names)
        + f" | {c0['ece_fine']:.4f} | "
        + " | ".join("" for _ in sevs)
        + " |\n"
    )
    for cname, per in corr.items():
        m = per["mean"]
        body += (
            f"| {cname} | "
            + " | ".join(f"{m[f'accuracy_{n}']:.4f}" for n in names)
            + f" | {m['ece_fine']:.4f} | "
            + " | ".join(f"{per[s]['accuracy_fine']:.4f}" for s in sevs)
            + " |\n"
        )
    return head + body


def robustness_curves_png(metrics: dict[str, Any], names: list[str]) -> bytes:
    """PNG: accuracy per level vs eps for each attack; fine accuracy vs severity per corruption."""
    plt = pyplot()
    attacks = metrics["attacks"]
    corr = metrics["corruptions"]
    panels = len(attacks) + (1 if corr else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8), squeeze=False)
    for ax, (attack, per_eps) in zip(axes[0], attacks.items(), strict=False):
        eps = [0.0] + [float(e) for e in per_eps]
        for name in names:
            acc = [metrics["clean"][f"accuracy_{name}"]]
            acc += [s[f"accuracy_{name}"] for s in per_eps.values()]
            ax.plot(eps, acc, marker="o", label=name)
        ax.set_title(f"{attack.upper()} (L-inf, {metrics['attack_images']} test images)")
        ax.set_xlabel("eps (pixels in [0, 1])")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if corr:
        ax = axes[0, -1]
        clean = metrics["corruptions_clean"]["accuracy_fine"]
        for cname, per in corr.items():
            sevs = [0] + [int(s) for s in per if s != "mean"]
            acc = [clean] + [per[s]["accuracy_fine"] for s in per if s != "mean"]
            ax.plot(sevs, acc, marker=".", label=cname)
        ax.set_title(f"Corruptions, fine level ({metrics['corruption_images']} test images)")
        ax.set_xlabel("severity")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return figure_png(fig)


def adversarial_examples_png(
    images: np.ndarray,
    adversarial: np.ndarray,
    labels: np.ndarray,
    adv_log_probs: Tensor,
    tree: Hierarchy,
    what: str,
    seed: int,
    n: int = 8,
) -> bytes:
    """PNG: clean images (top) over their adversarial versions with the new prediction."""
    plt = pyplot()
    pred = adv_log_probs.argmax(1).cpu().numpy()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(n, len(images)), replace=False)
    fig, axes = plt.subplots(2, len(pick), figsize=(len(pick) * 1.2, 2.8), squeeze=False)
    for c, i in enumerate(pick):
        adv = (adversarial[i].transpose(1, 2, 0) * 255).round().astype(np.uint8)
        for r, img in enumerate((images[i], adv)):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        axes[0, c].set_title(tree.leaves[labels[i]], fontsize=6)
        axes[1, c].set_title(
            tree.leaves[pred[i]], fontsize=6, color="green" if pred[i] == labels[i] else "red"
        )
    fig.suptitle(f"Clean (top) and {what} (bottom, predicted leaf)", fontsize=9)
    fig.tight_layout(pad=0.3)
    return figure_png(fig, dpi=90)
