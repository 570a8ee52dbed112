"""Hierarchical metrics: per-level accuracy, top-k, mistake severity, distance@k, confusions.

Mistake severity and hierarchical distance follow Bertinetto et al. (2020), "Making better
mistakes": the height of the lowest common ancestor (LCA) of prediction and truth, averaged over
the mistakes (severity) or over the top-k predictions of every image (distance@k).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.reporting.plots import figure_png, pyplot
from models.tree.hierarchy import Hierarchy


def hierarchical_metrics(
    leaf_probs: np.ndarray, labels: np.ndarray, tree: Hierarchy, ks: tuple[int, ...] = (1, 3, 5)
) -> dict[str, float]:
    """Metrics of merged leaf probabilities ``[N, n_leaves]`` against leaf labels ``[N]``.

    Per-level accuracy is that of the predicted leaf's path (a merged prediction is a path).
    """
    tree.check_labels(labels, "evaluation labels")
    order = np.argsort(-leaf_probs, axis=1)
    pred = order[:, 0]
    out: dict[str, float] = {}
    for level, name in enumerate(tree.level_names):
        out[f"accuracy_{name}"] = float(
            (tree.leaf_paths[pred, level] == tree.leaf_paths[labels, level]).mean()
        )
    out["accuracy_fine"] = float((pred == labels).mean())
    heights = tree.lca_height
    for k in ks:
        k_eff = min(k, leaf_probs.shape[1])
        top = order[:, :k_eff]
        out[f"top{k}_accuracy"] = float((top == labels[:, None]).any(axis=1).mean())
        out[f"hier_distance_at_{k}"] = float(heights[top, labels[:, None]].mean())
    wrong = pred != labels
    out["mistakes"] = float(wrong.sum())
    out["mistake_severity"] = (
        float(heights[pred[wrong], labels[wrong]].mean()) if wrong.any() else 0.0
    )
    return out


def confusion_matrices(
    pred_leaf: np.ndarray, labels: np.ndarray, tree: Hierarchy
) -> list[np.ndarray]:
    """One ``[n_l, n_l]`` count matrix per level (rows: truth, columns: prediction)."""
    out = []
    for level, size in enumerate(tree.level_sizes):
        t, p = tree.leaf_paths[labels, level], tree.leaf_paths[pred_leaf, level]
        out.append(np.bincount(t * size + p, minlength=size * size).reshape(size, size))
    return out


def confusion_png(matrices: list[np.ndarray], tree: Hierarchy, title: str = "") -> bytes:
    """PNG with one row-normalised confusion matrix per level."""
    plt = pyplot()

    sizes = [m.shape[0] for m in matrices]
    fig, axes = plt.subplots(
        1, len(matrices), figsize=(sum(max(3.0, 0.45 * s + 1.5) for s in sizes), 5), squeeze=False
    )
    for ax, m, names, level in zip(
        axes[0], matrices, tree.level_nodes, tree.level_names, strict=True
    ):
        norm = m / np.maximum(1, m.sum(axis=1, keepdims=True))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        if len(names) <= 12:
            for i in range(len(names)):
                for j in range(len(names)):
                    if m[i, j]:
                        ax.text(
                            j,
                            i,
                            int(m[i, j]),
                            ha="center",
                            va="center",
                            fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black",
                        )
        ax.set_title(level)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


def metrics_table(rows: dict[str, dict[str, Any]], keys: list[str]) -> str:
    """A Markdown table: one row per named metrics dict, one column per key."""
    head = "| | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    body = ""
    for name, values in rows.items():
        cells = [
            f"{values[k]:.4f}" if isinstance(values.get(k), float) else str(values.get(k, ""))
            for k in keys
        ]
        body += f"| {name} | " + " | ".join(cells) + " |\n"
    return head + body
