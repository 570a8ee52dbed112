"""The served model in float32, with int8 linear layers, and int8 convolutions and neck.

``serving/service.yaml``'s ``quantization`` picks how the service runs the classifier
(``dynamic-int8``: int8 weights in the linear layers, and the guard's kNN search in two stages,
int8 then float32; ``static-int8``: the trunk's convolutions in int8 as well, with the
activation ranges the artifact carries, fitted here on the val split when it has none). A
low-precision runtime is kept only if it changes nothing a client or
the monitor reads beyond noise: this
benchmark scores the Fashion-MNIST test split (10,000 images) and the offline OOD sets with the
same guarded model both ways (the guard is fitted once, in float32, as the train pipeline does;
each int8 runtime serves its own threshold, set on the val split at the same rate)
and reports accuracy per level, how many answers change (leaf, OOD verdict), AUROC and flagged
shares per OOD set, and the in-process latency of ``GuardedPredictor.classify`` at batch 1 and
32 (median of repeated calls; the threads the service gives one worker).

    python bench/serving_runtime.py --model-dir DIR [--heldout-dir DIR] [--quick]

``--heldout-dir``: a model trained without ``--heldout-class`` (``bench/ood_detection.py
--train-heldout``); its guard is fitted here, after its activation ranges, with the train
pipeline's ``ood:`` settings. Writes ``bench/results/serving_runtime.md`` and ``.json`` (full runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from models.calibration import CalibrationConfig  # noqa: E402
from models.calibration.activation_ranges import with_activation_ranges  # noqa: E402
from models.classifier.io import TrainedClassifier  # noqa: E402
from models.data.ingest import DatasetConfig, build_dataset  # noqa: E402
from models.ood import GuardedPredictor, build_ood_sets, fit_guard, with_guard  # noqa: E402
from models.ood.evaluate import auroc  # noqa: E402
from models.ood.fit import with_runtime_thresholds  # noqa: E402
from models.runtime.quantize import QUANTIZATIONS  # noqa: E402
from models.runtime.static_int8 import missing_ranges  # noqa: E402

BATCH = 1000
BATCH_DEPENDENCE_IMAGES = 512


def classify_all(predictor: GuardedPredictor, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leaf probabilities ``[N, n_leaves]`` and served OOD scores ``[N]``, in batches."""
    probs, scores = [], []
    for start in range(0, len(images), BATCH):
        p, verdicts = predictor.classify(images[start : start + BATCH])
        probs.append(p)
        scores.append([v["score"] if v else np.nan for v in verdicts])
    return np.concatenate(probs), np.concatenate(scores).astype(np.float64)


def latency_ms(predictor: GuardedPredictor, images: np.ndarray, batch: int, calls: int) -> float:
    """Median milliseconds of one ``classify`` call on ``batch`` images."""
    x = np.ascontiguousarray(images[:batch])
    for _ in range(20):
        predictor.classify(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predictor.classify(x)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def batch_dependence(predictor: GuardedPredictor, images: np.ndarray) -> dict[str, float]:
    """How far an image's answer moves with its batch: each image alone vs in batches of 64.

    The service batches concurrent requests together, so a runtime whose answers move with the
    batch answers the same image differently under load. Max over ``images`` of the leaf
    probabilities' and the served OOD score's absolute difference.
    """
    alone = [predictor.classify(images[i : i + 1]) for i in range(len(images))]
    p1 = np.concatenate([p for p, _ in alone])
    s1 = np.array([v[0]["score"] if v[0] else np.nan for _, v in alone])
    p64, s64 = [], []
    for start in range(0, len(images), 64):
        p, verdicts = predictor.classify(images[start : start + 64])
        p64.append(p)
        s64 += [v["score"] if v else np.nan for v in verdicts]
    return {
        "max_prob_diff": float(np.abs(p1 - np.concatenate(p64)).max()),
        "max_score_diff": float(np.nanmax(np.abs(s1 - np.array(s64)), initial=0.0)),
    }


def evaluate(
    classifier: TrainedClassifier,
    quantization: str,
    test: tuple[np.ndarray, np.ndarray],
    sets: dict[str, np.ndarray],
    calls: int,
) -> dict[str, Any]:
    """Accuracy per level, OOD scores of test and every set, latency, for one runtime."""
    predictor = GuardedPredictor(classifier, "cpu", quantization)
    test_x, test_y = test
    probs, test_scores = classify_all(predictor, test_x)
    leaf = probs.argmax(1)
    tree = classifier.tree
    truth, pred = tree.all_level_labels(test_y), tree.all_level_labels(leaf)
    out: dict[str, Any] = {
        "accuracy": {
            name: round(float((truth[:, i] == pred[:, i]).mean()), 5)
            for i, name in enumerate(tree.level_names)
        },
        "leaf": leaf,
        "test_scores": test_scores,
        "set_scores": {name: classify_all(predictor, x)[1] for name, x in sets.items()},
        "threshold": predictor.threshold,
        "latency_ms": {str(b): round(latency_ms(predictor, test_x, b, calls), 3) for b in (1, 32)},
        "batch_dependence": batch_dependence(predictor, test_x[:BATCH_DEPENDENCE_IMAGES]),
    }
    return out


def compare(runs: dict[str, dict[str, Any]], sets: list[str]) -> dict[str, Any]:
    """The table's numbers: per runtime, and what changes from float32."""
    ref = runs["none"]
    table: dict[str, Any] = {}
    for name, run in runs.items():
        threshold = run["threshold"]
        flagged_in = float((run["test_scores"] > threshold).mean())
        row = {
            "accuracy": run["accuracy"],
            "latency_ms": run["latency_ms"],
            "batch_dependence": run["batch_dependence"],
            "test_flagged": round(flagged_in, 4),
            "auroc": {s: round(auroc(run["test_scores"], run["set_scores"][s]), 4) for s in sets},
            "flagged": {
                s: round(float((run["set_scores"][s] > threshold).mean()), 4) for s in sets
            },
            "leaf_changed": int((run["leaf"] != ref["leaf"]).sum()),
            "verdict_changed": int(  # each at its runtime's threshold
                ((run["test_scores"] > threshold) != (ref["test_scores"] > ref["threshold"])).sum()
            ),
            "score_abs_diff_p99": round(
                float(np.quantile(np.abs(run["test_scores"] - ref["test_scores"]), 0.99)), 4
            ),
        }
        row["auroc_worst"] = min(row["auroc"].values())
        table[name] = row
    return table


def heldout_sets(data: Any, args: argparse.Namespace) -> tuple[TrainedClassifier, Any, Any]:
    """The held-out-class model with its guard, its test split and the held-out images."""
    from bench.ood_detection import heldout_data, served_config

    splits, _, held = heldout_data(data, args.heldout_class)
    classifier = TrainedClassifier.load(Path(args.heldout_dir) / "classifier")
    # the pipeline's order: activation ranges (calibration), then the guard and its thresholds
    classifier = with_ranges(classifier, splits["val"][0])
    guard, _ = fit_guard(classifier, None, *splits["train"], splits["val"][0], served_config(args))
    return with_guard(classifier, guard), splits["test"], {f"heldout {args.heldout_class}": held}


def with_ranges(classifier: TrainedClassifier, val_images: np.ndarray) -> TrainedClassifier:
    """The classifier with every int8 activation range: its own, else fitted as the pipeline does.

    Artifacts from before the neck had ranges would otherwise serve it dynamic-int8. A guard's
    int8 thresholds are set on the val split when the ranges were fitted here or the artifact
    predates them (the pipeline sets them after calibration).
    """
    missing = missing_ranges(classifier.build("cpu"), classifier.activation_ranges)
    if missing:
        print(f"no activation ranges for {missing} in the artifact: fitted on the val split")
        classifier = with_activation_ranges(
            classifier, val_images, CalibrationConfig().activation_range_images
        )
    if classifier.ood_info is not None and (
        missing or not classifier.ood_info.get("runtime_thresholds")
    ):
        print("the guard's int8 thresholds set on the val split")
        classifier = with_runtime_thresholds(classifier, val_images)
    return classifier


def report(result: dict[str, Any]) -> str:
    """The Markdown table."""
    sets = result["sets"]
    lines = [
        "# The served model in float32, with int8 linear layers (+ two-stage kNN search), and with"
        " int8 convolutions and neck at fitted ranges",
        "",
        f"Machine: {result['machine']}. Command: `{result['command']}`. Model: "
        f"`{result['model_dir']}`; {result['test_images']} test images; OOD sets of "
        f"{result['set_size']} images (`models/ood/sets.py`); the guard fitted once in float32, "
        "each runtime's threshold at the same rate of the val split. "
        f"Latency: median of {result['calls']} in-process `GuardedPredictor.classify` calls, "
        f"{result['threads']} torch thread(s) (the service's per worker). Alone vs in 64: the "
        f"first {BATCH_DEPENDENCE_IMAGES} test images classified one at a time and in batches "
        "of 64 (the service batches concurrent requests).",
        "",
        "| runtime | "
        + " | ".join(result["levels"][::-1])
        + " | leaves changed | OOD verdicts changed | "
        "test flagged | worst AUROC | p50 ms, 1 image | p50 ms, 32 images | "
        "alone vs in 64: max |Δ leaf probability| | max |Δ OOD score| |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["runtimes"].items():
        acc = row["accuracy"]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{100 * acc[level]:.2f} %" for level in result["levels"][::-1])
            + f" | {row['leaf_changed']} | {row['verdict_changed']} | "
            f"{100 * row['test_flagged']:.2f} % | {row['auroc_worst']:.4f} | "
            f"{row['latency_ms']['1']:.3f} | {row['latency_ms']['32']:.3f} | "
            f"{row['batch_dependence']['max_prob_diff']:.1e} | "
            f"{row['batch_dependence']['max_score_diff']:.1e} |"
        )
    lines += ["", "AUROC / share flagged per OOD set:", ""]
    lines.append("| runtime | " + " | ".join(sets) + " |")
    lines.append("|---|" + "---|" * len(sets))
    for name, row in result["runtimes"].items():
        cells = [f"{row['auroc'][s]:.4f} / {100 * row['flagged'][s]:.1f} %" for s in sets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if held := result.get("heldout"):
        lines += ["", f"Held-out class ({held['set']}, model trained without it):", ""]
        for name, row in held["runtimes"].items():
            lines.append(
                f"- {name}: AUROC {row['auroc_worst']:.4f}, flagged "
                f"{100 * list(row['flagged'].values())[0]:.1f} %, test flagged "
                f"{100 * row['test_flagged']:.2f} %, OOD verdicts changed {row['verdict_changed']}"
            )
    return "\n".join(lines) + "\n"


def main() -> None:  # noqa: D103 - the module docstring says it all
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a classifier saved with its guard")
    parser.add_argument("--heldout-dir", help="bench/ood_detection.py --train-heldout's output")
    parser.add_argument("--heldout-class", default="Sandal")
    parser.add_argument("--fit-images", type=int, default=20000)
    parser.add_argument("--set-size", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="fewer images, same code path")
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    args = parser.parse_args()
    from models.runtime.environment import quiet_telemetry
    from serving.config import load_service_config

    quiet_telemetry()
    threads = load_service_config().threads_per_worker()
    torch.set_num_threads(threads)
    data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
    test_x, test_y = data.split("test")
    set_size, calls = (200, 50) if args.quick else (args.set_size, 300)
    if args.quick:
        test_x, test_y = test_x[:2000], test_y[:2000]
    sets = build_ood_sets(test_x, n=set_size, seed=0)[0]
    classifier = with_ranges(TrainedClassifier.load(args.model_dir), data.split("val")[0])
    runs = {q: evaluate(classifier, q, (test_x, test_y), sets, calls) for q in QUANTIZATIONS}
    result: dict[str, Any] = {
        "machine": machine(),
        "command": "python " + " ".join(sys.argv),
        "model_dir": args.model_dir,
        "test_images": int(len(test_x)),
        "set_size": set_size,
        "calls": calls,
        "threads": threads,
        "levels": list(classifier.tree.level_names),
        "sets": list(sets),
        "runtimes": compare(runs, list(sets)),
    }
    if args.heldout_dir:
        held_model, held_test, held = heldout_sets(data, args)
        held_runs = {q: evaluate(held_model, q, held_test, held, calls) for q in QUANTIZATIONS}
        result["heldout"] = {"set": list(held)[0], "runtimes": compare(held_runs, list(held))}
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "serving_runtime.md").write_text(report(result))
        (out / "serving_runtime.json").write_text(json.dumps(result, indent=1) + "\n")
    print(report(result))
    rows = result["runtimes"]
    print(
        json.dumps(
            {q: {"accuracy": r["accuracy"], "auroc": r["auroc_worst"]} for q, r in rows.items()}
        )
    )


if __name__ == "__main__":
    main()
