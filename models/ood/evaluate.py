"""How well a score separates in-distribution images from each OOD set, and pictures of it."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.reporting.plots import figure_png, pyplot, show_image


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Area under the ROC curve for "OOD scores higher" (Mann-Whitney U, ties count half)."""
    scores = np.concatenate([in_scores, out_scores]).astype(np.float64)
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    n_in, n_out = len(in_scores), len(out_scores)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Share of OOD images accepted when ``tpr`` of in-distribution images are (lower = better)."""
    threshold = np.quantile(in_scores, tpr)
    return float((out_scores <= threshold).mean())


def separation_table(
    in_components: dict[str, np.ndarray], out_components: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, dict[str, float]]]:
    """``{set: {component: {"auroc", "fpr95"}}}`` for every component both sides have."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, comps in out_components.items():
        table[name] = {
            c: {
                "auroc": round(auroc(in_components[c], comps[c]), 4),
                "fpr95": round(fpr_at_tpr(in_components[c], comps[c]), 4),
            }
            for c in comps
            if c in in_components
        }
    return table


def flagged_shares(
    threshold: float, in_score: np.ndarray, out_scores: dict[str, np.ndarray]
) -> dict[str, float]:
    """Share of images over the served threshold: ``in_distribution`` and each set."""
    shares = {"in_distribution": float((in_score > threshold).mean())}
    shares.update({name: float((s > threshold).mean()) for name, s in out_scores.items()})
    return {k: round(v, 4) for k, v in shares.items()}


def score_histogram_png(
    reference: np.ndarray,
    others: dict[str, np.ndarray],
    threshold: float,
    title: str = "OOD score",
) -> bytes:
    """Histograms of the served score: the in-distribution reference against each other set."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    everything = np.concatenate([reference, *others.values(), [threshold]])
    lo, hi = np.percentile(everything, [0.5, 99.5])
    bins = np.linspace(lo, hi, 60)
    ax.hist(np.clip(reference, lo, hi), bins=bins, density=True, alpha=0.5, label="reference")
    for name, values in others.items():
        ax.hist(
            np.clip(values, lo, hi), bins=bins, density=True, histtype="step", lw=1.5, label=name
        )
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel(f"{title} (higher = more unusual; clipped to the 0.5-99.5 % range)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return figure_png(fig)


def unusual_images_png(
    images: np.ndarray, scores: np.ndarray, threshold: float, count: int = 24
) -> bytes:
    """The ``count`` images of a batch with the highest scores, each titled with its score."""
    plt = pyplot()
    order = np.argsort(-scores)[: min(count, len(scores))]
    cols = min(8, len(order))
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.25), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), order, strict=False):
        flag = " OOD" if scores[i] > threshold else ""
        show_image(ax, images[i], f"{scores[i]:.3g}{flag}", fontsize=7)
        ax.axis("on")
    fig.suptitle(f"most unusual images (threshold {threshold:.3g})", fontsize=9)
    fig.tight_layout()
    return figure_png(fig, dpi=80)


def summarize(table: dict[str, dict[str, dict[str, float]]], component: str) -> dict[str, Any]:
    """Worst and mean AUROC of one component over the sets."""
    values = [row[component]["auroc"] for row in table.values() if component in row]
    if not values:
        return {"min_auroc": None, "mean_auroc": None}
    return {"min_auroc": round(min(values), 4), "mean_auroc": round(float(np.mean(values)), 4)}


def evaluate_guard(
    classifier: Any, test_images: np.ndarray, n_per_set: int = 1000, seed: int = 0
) -> tuple[dict[str, Any], bytes]:
    """The served guard on the test split against the project's offline OOD sets.

    Args:
        classifier: a ``TrainedClassifier`` carrying a guard.
        test_images: in-distribution uint8 test images (also the source of ``inverted``).
        n_per_set: images per OOD set.
        seed: the sets' seed.

    Returns:
        Metrics (``ood_auroc`` = the worst set's AUROC, ``ood_auroc_<set>``, ``ood_fpr95_<set>``,
        flagged shares, the scorer and threshold) and the score histogram (PNG).

    Raises:
        ValueError: the classifier carries no guard.
    """
    from models.ood.fit import score_images
    from models.ood.guard import OodGuard
    from models.ood.sets import build_ood_sets

    guard = OodGuard.from_classifier(classifier)
    if guard is None:
        raise ValueError("the classifier carries no OOD guard: fit one first (fit_guard)")
    model = classifier.build()
    test = score_images(classifier, guard, test_images, model, every_component=False).score
    sets, missing = build_ood_sets(test_images, n=n_per_set, seed=seed)
    scores = {
        name: score_images(classifier, guard, images, model, every_component=False).score
        for name, images in sets.items()
    }
    metrics: dict[str, Any] = {"ood_scorer": guard.scorer, "ood_threshold": guard.threshold}
    for name, s in scores.items():
        metrics[f"ood_auroc_{name}"] = round(auroc(test, s), 4)
        metrics[f"ood_fpr95_{name}"] = round(fpr_at_tpr(test, s), 4)
    aurocs = [metrics[f"ood_auroc_{n}"] for n in scores]
    metrics["ood_auroc"] = min(aurocs) if aurocs else None
    metrics["ood_auroc_mean"] = round(float(np.mean(aurocs)), 4) if aurocs else None
    shares = flagged_shares(guard.threshold, test, scores)
    metrics.update({f"ood_flagged_{k}": v for k, v in shares.items()})
    metrics["ood_sets"] = list(scores)
    metrics["ood_sets_missing"] = missing
    metrics["test_images"] = int(len(test_images))
    png = score_histogram_png(test, scores, guard.threshold, f"OOD score ({guard.scorer})")
    return metrics, png
