"""Step: evaluate the calibrated classifier on the test split, which nothing before touched."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import torch
from PIL import Image
from zenml import log_metadata, step
from zenml.types import HTMLString

from models.calibration import expected_calibration_error, reliability_diagram_png
from models.classifier_io import TrainedClassifier
from models.data import LabelledImages
from models.merge import (
    TreeTensors,
    conditional_log_probs,
    decode_greedy,
    independent_argmax_paths,
    node_probs,
    path_consistency,
)
from models.metrics import confusion_matrices, confusion_png, hierarchical_metrics, metrics_table
from models.report import html_report
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step
def evaluate_classifier(
    classifier: TrainedClassifier, dataset: LabelledImages
) -> tuple[
    Annotated[dict[str, Any], artifacts.EVALUATION],
    Annotated[HTMLString, artifacts.EVALUATION_REPORT],
    Annotated[Image.Image, artifacts.CONFUSION_MATRICES],
]:
    """Metrics of the calibrated classifier on the test split, with a report and pictures.

    Accuracy per level (global and greedy decoding), top-k, mistake severity, hierarchical
    distance@k, ECE before/after calibration, path consistency, confusion matrices.
    """
    tree = dataset.hierarchy
    test_x, test_y = dataset.split("test")
    logits = classifier.logits(test_x)
    device = logits[0].device
    tt = TreeTensors(tree, device)
    labels = torch.from_numpy(test_y).to(device)
    raw = classifier.leaf_probs(logits, calibrated=False)
    cal = classifier.leaf_probs(logits, calibrated=True)
    scaled = [z / t for z, t in zip(logits, classifier.temperatures, strict=True)]
    greedy = decode_greedy(conditional_log_probs(scaled, tt), tt).cpu().numpy()

    global_metrics = hierarchical_metrics(cal.cpu().numpy(), test_y, tree)
    greedy_probs = (
        torch.nn.functional.one_hot(torch.from_numpy(greedy), tree.num_leaves).float().numpy()
    )
    greedy_metrics = hierarchical_metrics(greedy_probs, test_y, tree, ks=(1,))
    level_labels = torch.from_numpy(tree.all_level_labels(test_y)).to(device)
    ece = {
        "fine": (expected_calibration_error(raw, labels), expected_calibration_error(cal, labels))
    }
    for level, name in enumerate(tree.level_names[:-1]):
        ece[name] = tuple(
            expected_calibration_error(node_probs(p, tt, level), level_labels[:, level])
            for p in (raw, cal)
        )
    # per-level marginal argmax (each level decoded on its own) need not form a path
    marginals = [node_probs(cal, tt, level) for level in range(tree.depth)]
    independent = path_consistency(independent_argmax_paths(marginals), tt)
    metrics: dict[str, Any] = {
        "split": "test",
        "test_images": int(len(test_y)),
        **{f"global_{k}": v for k, v in global_metrics.items()},
        **{
            f"greedy_{k}": v
            for k, v in greedy_metrics.items()
            if k.startswith("accuracy") or k == "mistake_severity"
        },
        **{f"ece_{k}_before": v[0] for k, v in ece.items()},
        **{f"ece_{k}_after": v[1] for k, v in ece.items()},
        "path_consistency_merged": 1.0,
        "path_consistency_per_level_argmax": independent,
        "temperatures": [round(t, 4) for t in classifier.temperatures],
        "dataset_hash": dataset.content_hash,
    }
    logger.info(
        "Test evaluation: %s", {k: v for k, v in metrics.items() if not isinstance(v, list)}
    )

    pred = cal.argmax(1).cpu().numpy()
    confusion = confusion_png(
        confusion_matrices(pred, test_y, tree), tree, "test split (global decoding)"
    )
    reliability = reliability_diagram_png(
        {"uncalibrated": (raw, labels), "calibrated": (cal, labels)}, "fine level, test split"
    )
    levels = [*tree.level_names]
    acc_keys = [f"accuracy_{lv}" for lv in levels] + [
        "top3_accuracy",
        "mistake_severity",
        "hier_distance_at_1",
        "hier_distance_at_5",
    ]
    table = metrics_table(
        {"global argmax": global_metrics, "greedy top-down": greedy_metrics}, acc_keys
    )
    ece_table = "| level | ECE before | ECE after |\n|---|---|---|\n" + "".join(
        f"| {k} | {v[0] * 100:.2f}% | {v[1] * 100:.2f}% |\n" for k, v in ece.items()
    )
    html = html_report(
        f"hiergan evaluation — {dataset.name} test split ({len(test_y)} images)",
        [
            ("Accuracy and mistakes", table),
            ("Calibration (15-bin ECE)", ece_table),
            ("Reliability diagram", reliability),
            ("Confusion matrices", confusion),
            (
                "Path consistency",
                "merged predictions: 100% valid paths; "
                f"per-level marginal argmax: {independent:.2%}",
            ),
            ("Temperatures", str(dict(zip(levels, metrics["temperatures"], strict=True)))),
        ],
    )
    tracking.log_metrics({f"test_{k}": v for k, v in metrics.items() if isinstance(v, float | int)})
    tracking.log_png(confusion, "evaluation/confusion_matrices.png")
    tracking.log_png(reliability, "evaluation/reliability_test.png")
    tracking.log_text(html, "evaluation/report.html")
    log_metadata(
        metadata={"evaluation": {k: v for k, v in metrics.items() if not isinstance(v, list)}}
    )
    return metrics, HTMLString(html), tracking.png_image(confusion)
