"""The test-split evaluation of a calibrated classifier: numbers, pictures and an HTML report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.calibration.diagram import level_reliability_png
from models.calibration.ece import level_classwise_ece, level_ece
from models.classifier.io import TrainedClassifier
from models.evaluation.decoding import decoding_metrics
from models.evaluation.metrics import (
    confusion_matrices,
    confusion_png,
    hierarchical_metrics,
    metrics_table,
)
from models.reporting.html import html_report
from models.tree.merge import (
    TreeTensors,
    conditional_log_probs,
    decode_greedy,
    independent_argmax_paths,
    node_probs,
    path_consistency,
    scale_logits,
)


@dataclass
class Evaluation:
    """Metrics (JSON-able), the report page, and its two pictures (PNG)."""

    metrics: dict[str, Any]
    html: str
    confusion_png: bytes
    reliability_png: bytes


@dataclass
class SplitScores:
    """The numbers of one evaluated split, and the probabilities the pictures are drawn from."""

    metrics: dict[str, Any]
    raw: Tensor  # [N, n_leaves] uncalibrated leaf probabilities
    calibrated: Tensor  # [N, n_leaves] calibrated
    tables: dict[str, str]


def score_split(
    classifier: TrainedClassifier, images: np.ndarray, labels: np.ndarray
) -> SplitScores:
    """Every number of the evaluation, no pictures (runs with torch alone, e.g. on a GPU box).

    Accuracy per level (global and greedy decoding), top-k, mistake severity, distance@k, ECE
    and classwise ECE before/after calibration per level, every decoding of
    :mod:`models.evaluation.decoding` (HiClass' combiners, conditional-risk minimisation) with
    hierarchical F1, and path consistency.
    """
    tree = classifier.tree
    logits = classifier.logits(images)
    tt = TreeTensors(tree, logits[0].device)
    leaf_labels = torch.from_numpy(labels).to(logits[0].device)
    raw = classifier.leaf_probs(logits, calibrated=False)
    cal = classifier.leaf_probs(logits, calibrated=True)
    cond = conditional_log_probs(scale_logits(logits, classifier.calibration, tt), tt)
    greedy = decode_greedy(cond, tt).cpu()
    global_metrics = hierarchical_metrics(cal.cpu().numpy(), labels, tree)
    greedy_probs = torch.nn.functional.one_hot(greedy, tree.num_leaves).float().numpy()
    greedy_metrics = hierarchical_metrics(greedy_probs, labels, tree, ks=(1,))
    names = ["fine", *tree.level_names[:-1]]
    ece_before, ece_after = level_ece(raw, leaf_labels, tt), level_ece(cal, leaf_labels, tt)
    ece = {name: (ece_before[name], ece_after[name]) for name in names}
    cw_before = level_classwise_ece(raw, leaf_labels, tt)
    cw_after = level_classwise_ece(cal, leaf_labels, tt)
    decodings = decoding_metrics(cal, cond, labels, tt)
    # per-level marginal argmax (each level decoded on its own) need not form a path
    marginals = [node_probs(cal, tt, level) for level in range(tree.depth)]
    independent = path_consistency(independent_argmax_paths(marginals), tt)
    metrics: dict[str, Any] = {
        "test_images": int(len(labels)),
        **{f"global_{k}": v for k, v in global_metrics.items()},
        **{
            f"greedy_{k}": v
            for k, v in greedy_metrics.items()
            if k.startswith("accuracy") or k == "mistake_severity"
        },
        **{f"ece_{k}_before": v[0] for k, v in ece.items()},
        **{f"ece_{k}_after": v[1] for k, v in ece.items()},
        **{f"classwise_ece_{k}_before": cw_before[k] for k in names},
        **{f"classwise_ece_{k}_after": cw_after[k] for k in names},
        "hier_f1": decodings["product"]["hier_f1"],
        "decodings": decodings,
        "path_consistency_merged": 1.0,
        "path_consistency_per_level_argmax": independent,
        "calibration_methods": classifier.calibration_methods,
        "temperatures": classifier.temperatures,
    }
    tables = {
        "accuracy": _accuracy_table(tree.level_names, global_metrics, greedy_metrics),
        "ece": _ece_table(ece, cw_before, cw_after),
        "decodings": decoding_table(decodings, tree.level_names),
        "independent": f"{independent:.2%}",
    }
    return SplitScores(metrics, raw, cal, tables)


def evaluate_classifier(
    classifier: TrainedClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    title: str,
    extra_sections: Sequence[tuple[str, str | bytes]] = (),
) -> Evaluation:
    """Metrics, pictures and the report of a calibrated classifier on one held-out split.

    The numbers of :func:`score_split`, confusion matrices and a reliability diagram per level.

    Args:
        classifier: the calibrated classifier.
        images: uint8 ``[N, H, W, C]`` of the split that nothing before touched (test).
        labels: ``[N]`` their leaves.
        title: what was evaluated, for the report's heading.
        extra_sections: more ``(heading, table or PNG)`` sections for the report (e.g. a
            conditional generator's samples per tree node).
    """
    tree = classifier.tree
    scores = score_split(classifier, images, labels)
    tt = TreeTensors(tree, scores.calibrated.device)
    leaf_labels = torch.from_numpy(labels).to(scores.calibrated.device)
    pred = scores.calibrated.argmax(1).cpu().numpy()
    confusion = confusion_png(
        confusion_matrices(pred, labels, tree), tree, f"{title} (global decoding)"
    )
    reliability = level_reliability_png(
        {"uncalibrated": scores.raw, "calibrated": scores.calibrated}, leaf_labels, tt, title
    )
    html = _report_html(title, classifier, scores.tables, confusion, reliability)
    if extra_sections:  # the same page, with the extra sections before its end
        html = html.removesuffix("</body></html>") + _sections_html(extra_sections)
    return Evaluation(scores.metrics, html, confusion, reliability)


def decoding_table(decodings: dict[str, dict[str, Any]], levels: list[str]) -> str:
    """Markdown: one row per decoding (accuracy per level, ECE, hierarchical F1, severity)."""
    keys = [f"accuracy_{lv}" for lv in levels] + [
        "ece_fine",
        "classwise_ece_fine",
        "hier_f1",
        "mistake_severity",
        "mean_lca_height",
    ]
    return metrics_table(decodings, keys)


def _accuracy_table(
    levels: list[str], global_metrics: dict[str, float], greedy_metrics: dict[str, float]
) -> str:
    keys = [f"accuracy_{lv}" for lv in levels] + [
        "top3_accuracy",
        "mistake_severity",
        "hier_distance_at_1",
        "hier_distance_at_5",
    ]
    return metrics_table({"global argmax": global_metrics, "greedy top-down": greedy_metrics}, keys)


def _ece_table(
    ece: dict[str, tuple[float, float]], cw_before: dict[str, float], cw_after: dict[str, float]
) -> str:
    head = "| level | ECE before | ECE after | classwise ECE before | classwise ECE after |\n"
    return (
        head
        + "|---|---|---|---|---|\n"
        + "".join(
            f"| {k} | {v[0] * 100:.2f}% | {v[1] * 100:.2f}% | {cw_before[k] * 100:.2f}% | "
            f"{cw_after[k] * 100:.2f}% |\n"
            for k, v in ece.items()
        )
    )


def _report_html(
    title: str,
    classifier: TrainedClassifier,
    tables: dict[str, str],
    confusion: bytes,
    reliability: bytes,
) -> str:
    return html_report(
        f"hiergan evaluation — {title}",
        [
            ("Accuracy and mistakes", tables["accuracy"]),
            (
                "Decodings (HiClass combiners, conditional risk over LCA height)",
                tables["decodings"],
            ),
            ("Calibration (15-bin ECE; classwise ECE, Kull et al. 2019)", tables["ece"]),
            ("Reliability diagrams per level", reliability),
            ("Confusion matrices", confusion),
            (
                "Path consistency",
                "merged predictions: 100% valid paths; "
                f"per-level marginal argmax: {tables['independent']}",
            ),
            ("Calibration maps", str(classifier.calibration_methods)),
        ],
    )


def _sections_html(sections: Sequence[tuple[str, str | bytes]]) -> str:
    """The body of an :func:`html_report` page of ``sections``, closed."""
    page = html_report("", list(sections))
    return page[page.index("<h1></h1>") + len("<h1></h1>") :]


def split_scores(
    classifier: TrainedClassifier, images: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Accuracy per level and fine-level ECE of the calibrated classifier on these images."""
    probs: Tensor = classifier.leaf_probs(classifier.logits(images), calibrated=True).cpu()
    metrics = hierarchical_metrics(probs.numpy(), labels, classifier.tree, ks=(1,))
    tree = classifier.tree
    scores = {f"accuracy_{lv}": float(metrics[f"accuracy_{lv}"]) for lv in tree.level_names}
    scores["accuracy_fine"] = scores[f"accuracy_{tree.level_names[-1]}"]
    tt = TreeTensors(tree)
    scores["ece_fine"] = level_ece(probs, torch.from_numpy(labels), tt)["fine"]
    scores["images"] = float(len(labels))
    return scores
