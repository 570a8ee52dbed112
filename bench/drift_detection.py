"""Drift monitor quality and speed: detection of shifted batches, false alarms, report time.

With a trained classifier (default: ``/tmp/hiergan-default-classifier``), the reference is the
validation split of its training data (Fashion-MNIST, hash checked) and batches come from the
test split, as the monitor pipeline does it, with the monitor config's tests and gate:

- detection rate per kind of shift (rotation, inversion, noise, blur, brightness, contrast, a
  class removed, a class over-represented, 20 % out-of-distribution images, ...) over several
  random batches;
- false-alarm rate over clean bootstrap batches of the test split (target <= 5 %);
- time of the features + Evidently report (HTML included) over 10,000 images (target <= 30 s
  beyond ZenML start-up), and with ``--cli`` one real run of the monitor pipeline's CLI.

    python bench/drift_detection.py --quick
    python bench/drift_detection.py --cli

Clean bootstrap batches resample rows of the test split's feature frame: features are per image
(eval mode), so this equals scoring the resampled images. The last line printed is one JSON
object with the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine
from bench.ood_detection import knn_words
from models.classifier.io import TrainedClassifier
from models.data.ingest import build_dataset
from models.monitoring.drift import DriftGateConfig, drift_decision, run_drift_report
from models.monitoring.features import OOD_COLUMN, DriftFeatureExtractor
from models.ood.sets import build_ood_sets
from pipelines.monitor_pipeline import MonitorParams
from pipelines.run_config import load_run_config

REPO = Path(__file__).resolve().parents[1]
Shift = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    from torchvision.transforms.functional import rotate

    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    return rotate(x, degrees).permute(0, 2, 3, 1).contiguous().numpy()


def _blur(images: np.ndarray) -> np.ndarray:
    from torchvision.transforms.functional import gaussian_blur

    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    return gaussian_blur(x, kernel_size=3, sigma=1.0).permute(0, 2, 3, 1).contiguous().numpy()


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def shifts(tree_leaves: list[str]) -> dict[str, tuple[str, Shift]]:
    """Kinds of shift: ``name -> (what it does, function(images, labels, rng) -> images)``."""
    return {
        "rotate_90": ("rotated 90 degrees", lambda x, y, r: _rotate(x, 90)),
        "rotate_20": ("rotated 20 degrees", lambda x, y, r: _rotate(x, 20)),
        "invert": ("255 - x", lambda x, y, r: 255 - x),
        "noise_25": (
            "Gaussian noise, sigma 25/255",
            lambda x, y, r: _clip(x + r.normal(0, 25, x.shape)),
        ),
        "noise_10": (
            "Gaussian noise, sigma 10/255",
            lambda x, y, r: _clip(x + r.normal(0, 10, x.shape)),
        ),
        "blur": ("Gaussian blur 3x3, sigma 1", lambda x, y, r: _blur(x)),
        "brightness_40": ("+40 on every pixel", lambda x, y, r: _clip(x.astype(int) + 40)),
        "brightness_15": ("+15 on every pixel", lambda x, y, r: _clip(x.astype(int) + 15)),
        "contrast_0.6": ("pixels x 0.6", lambda x, y, r: _clip(x * 0.6)),
        "hflip": ("mirrored (the classifier trains with flips)", lambda x, y, r: x[:, :, ::-1]),
    }


def gate_variants(gate: DriftGateConfig) -> dict[str, DriftGateConfig]:
    """The configured gate with one trigger changed: what each trigger contributes.

    ``pred only``: prediction drift alone (the gate before the OOD guard); ``no ood_score`` /
    ``no ood share``: without the OOD score's drift / without the OOD share; ``+ img range``:
    drift of the darkest and brightest pixel (``img_min``, ``img_max``) as triggers too.
    """
    triggers = gate.trigger_columns
    return {
        "pred only": gate.model_copy(update={"trigger_columns": ["pred_*"], "max_ood_share": None}),
        "no ood_score": gate.model_copy(
            update={"trigger_columns": [t for t in triggers if t != OOD_COLUMN]}
        ),
        "no ood share": gate.model_copy(update={"max_ood_share": None}),
        "+ img range": gate.model_copy(
            update={"trigger_columns": [*triggers, "img_min", "img_max"]}
        ),
    }


def embedding_methods() -> dict[str, Any]:
    """Evidently's embedding drift methods, each with its default settings.

    ``model``: a classifier told to separate reference from batch (ROC AUC > 0.55); ``mmd``:
    kernel maximum mean discrepancy (> 0.015); ``ratio``: the share of components whose own
    Wasserstein test drifts (> 0.2); ``distance``: the Euclidean distance of the mean
    embeddings (> 0.2). They run on the ``emb_pc*`` columns the monitor already computes.
    """
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    return {
        "model": ModelDriftMethod(),
        "mmd": MMDDriftMethod(),
        "ratio": RatioDriftMethod(),
        "distance": DistanceDriftMethod(),
    }


def guard_settings(ood_info: dict[str, Any] | None) -> str:
    """``", kNN distance to the k-th nearest of 5000 train images, k = 1, pixels: ..."``.

    What the saved guard's fit recorded (``ood.json``'s ``info``); empty for a model without a
    guard or one saved before the fit recorded them.
    """
    info = (ood_info or {}).get("info") or {}
    parts = []
    if "knn_k" in info and "knn_images" in info:
        parts.append(knn_words(info["knn_k"], info["knn_images"], info.get("knn_leaves")))
    if info.get("pixels"):
        parts.append(f"pixels: {info['pixels']}")
    return "".join(f", {p}" for p in parts)


def run_cli(batch: np.ndarray, model_dir: str, config: str) -> dict[str, Any]:
    """One real monitor-pipeline CLI run on ``batch``; wall time, step times, report path."""
    with tempfile.TemporaryDirectory(prefix="hiergan-drift-bench-") as tmp:
        path = Path(tmp) / "batch.npz"
        np.savez(path, images=batch)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.monitor_pipeline", "--batch", str(path)]
            + ["--model-dir", model_dir, "--config", config],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    steps = {m[0]: float(m[1]) for m in re.findall(r"Step (\w+) has finished in ([\d.]+)s", out)}
    run = re.search(r"Pipeline run has finished in ([\d.]+)s", out)
    report = re.search(r"drift report: (\S+)", out)
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "pipeline_run_s": float(run[1]) if run else None,
        "steps_s": steps,
        "outside_run_s": round(wall - float(run[1]), 1) if run else None,
        "report": report[1] if report else None,
        "tail": out[-1500:] if proc.returncode not in (0, 3) else "",
    }


def main() -> None:  # noqa: D103 - the module docstring says it all
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches, same code path")
    parser.add_argument("--model-dir", default="/tmp/hiergan-default-classifier")
    parser.add_argument("--config", default="pipelines/configs/monitor.yaml")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clean-batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5, help="random batches per shift")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", action="store_true", help="also time one real CLI run (10k)")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    if args.quick:
        args.clean_batches, args.repeats = 6, 1
    params, _ = load_run_config(args.config, MonitorParams)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    classifier = TrainedClassifier.load(args.model_dir)
    data = build_dataset(params.dataset)
    if classifier.info.get("dataset_hash") != data.content_hash:
        sys.exit(f"{args.model_dir} was not trained on {params.dataset}: hashes differ")
    val_x, _ = data.split("val")
    test_x, test_y = data.split("test")
    leaves = list(data.hierarchy.leaves)

    extractor = DriftFeatureExtractor(classifier, params.features)
    t = time.perf_counter()
    reference = extractor.fit_reference(val_x)
    reference_s = time.perf_counter() - t
    columns = extractor.columns

    leaf_col = f"pred_{data.hierarchy.level_names[-1]}"
    methods = embedding_methods()
    gates = gate_variants(params.gate)
    detectors = [*gates, *methods]
    emb_cols = [c for c in columns.numerical if c.startswith("emb_pc")]

    def decide(frame: Any, labels: np.ndarray | None = None) -> dict[str, Any]:
        result = run_drift_report(
            reference,
            frame,
            columns,
            params.drift,
            False,
            extractor.ood_threshold,
            params.gate.max_ood_share,
        )
        summary = result.summary()
        decision = drift_decision(summary, params.gate)
        # other gates on the same report, and Evidently's embedding drift methods on the same
        # embeddings: what the table compares the configured gate with
        decision["alternatives"] = {
            name: drift_decision(summary, gate)["drifted"] for name, gate in gates.items()
        } | {
            name: bool(method(frame[emb_cols].copy(), reference[emb_cols].copy())[1])
            for name, method in methods.items()
        }
        if labels is not None:  # how much the shift hurts the model, for context
            truth = np.asarray(leaves, dtype=object)[labels]
            decision["accuracy"] = float((frame[leaf_col].to_numpy() == truth).mean())
        return decision

    # --- timing over 10,000 images: features, report with HTML
    timings = []
    for _ in range(1 if args.quick else 3):
        t0 = time.perf_counter()
        full = extractor.transform(test_x)
        t1 = time.perf_counter()
        result = run_drift_report(reference, full, columns, params.drift, html=True)
        t2 = time.perf_counter()
        timings.append((t1 - t0, t2 - t1, t2 - t0))
    features_s, report_s, total_s = (float(np.median([x[i] for x in timings])) for i in range(3))
    full_decision = drift_decision(result.summary(), params.gate)
    print(
        json.dumps(
            {"timing_10k": {"features_s": features_s, "report_s": report_s, "total_s": total_s}}
        ),
        flush=True,
    )

    # --- false alarms: clean bootstrap batches of the test split
    clean_rows = []
    for _ in range(args.clean_batches):
        idx = rng.choice(len(full), args.batch_size, replace=True)
        clean_rows.append(decide(full.iloc[idx].reset_index(drop=True), test_y[idx]))
    false_alarms = sum(d["drifted"] for d in clean_rows)
    alternative_false = {m: sum(d["alternatives"][m] for d in clean_rows) for m in detectors}
    column_false = {c: sum(c in d["drifted_columns"] for d in clean_rows) for c in columns.all}
    print(
        json.dumps(
            {"false_alarms": false_alarms, "of": len(clean_rows), "alternatives": alternative_false}
        ),
        flush=True,
    )

    # --- shifted batches
    rows: list[dict[str, Any]] = []
    kinds = shifts(leaves)
    for name, (what, fn) in kinds.items():
        hits, shares, accs, emb = 0, [], [], dict.fromkeys(detectors, 0)
        for _ in range(args.repeats):
            idx = rng.choice(len(test_x), args.batch_size, replace=False)
            shifted = fn(test_x[idx], test_y[idx], rng)
            d = decide(extractor.transform(np.ascontiguousarray(shifted)), test_y[idx])
            hits += d["drifted"]
            shares.append(d["share"])
            accs.append(d["accuracy"])
            emb = {m: emb[m] + d["alternatives"][m] for m in detectors}
        rows.append(
            {"shift": name, "what": what, "detected": hits, "of": args.repeats}
            | {"mean_share": float(np.mean(shares)), "accuracy": float(np.mean(accs))}
            | {"example_columns": d["drifted_columns"], "alternatives_detected": emb}
            | {"ood_share": d.get("ood_share")}
        )
        print(json.dumps(rows[-1]), flush=True)
    # out-of-distribution images mixed into a clean batch (20 %): the OOD share trigger's job
    ood_sets, _ = build_ood_sets(test_x, n=args.batch_size, seed=args.seed)
    for set_name in ("digits", "glyphs", "photos", "faces", "noise"):
        if set_name not in ood_sets:
            continue
        hits, shares, emb = 0, [], dict.fromkeys(detectors, 0)
        for _ in range(args.repeats):
            k = int(round(args.batch_size * 0.2))
            pool = ood_sets[set_name]
            mixed = np.concatenate(
                [
                    test_x[rng.choice(len(test_x), args.batch_size - k, replace=False)],
                    pool[rng.choice(len(pool), k, replace=len(pool) < k)],
                ]
            )
            d = decide(extractor.transform(mixed))
            hits += d["drifted"]
            shares.append(d["share"])
            emb = {m: emb[m] + d["alternatives"][m] for m in detectors}
        rows.append(
            {"shift": f"ood_{set_name}", "what": f"20 % {set_name} (models/ood/sets.py)"}
            | {"detected": hits, "of": args.repeats, "mean_share": float(np.mean(shares))}
            | {"accuracy": float("nan"), "example_columns": d["drifted_columns"]}
            | {"ood_share": d.get("ood_share"), "alternatives_detected": emb}
        )
        print(json.dumps(rows[-1]), flush=True)
    # one class removed (each class in turn) and one class over-represented (3x its share)
    for mode in ("removed", "tripled"):
        hits, shares, missed, accs, emb = 0, [], [], [], dict.fromkeys(detectors, 0)
        classes = range(len(leaves)) if not args.quick else range(2)
        for cls_ in classes:
            if mode == "removed":
                pool = np.flatnonzero(test_y != cls_)
                idx = rng.choice(pool, args.batch_size, replace=False)
            else:
                k = int(round(args.batch_size * 0.3))
                idx = np.concatenate(
                    [
                        rng.choice(np.flatnonzero(test_y == cls_), k, replace=False),
                        rng.choice(np.flatnonzero(test_y != cls_), args.batch_size - k, False),
                    ]
                )
            d = decide(full.iloc[idx].reset_index(drop=True), test_y[idx])
            hits += d["drifted"]
            shares.append(d["share"])
            accs.append(d["accuracy"])
            emb = {m: emb[m] + d["alternatives"][m] for m in detectors}
            if not d["drifted"]:
                missed.append(leaves[cls_])
        what = (
            "one class absent (each class in turn)"
            if mode == "removed"
            else "one class at 30 % of the batch (each class in turn)"
        )
        rows.append(
            {"shift": f"class_{mode}", "what": what, "detected": hits, "of": len(classes)}
            | {"mean_share": float(np.mean(shares)), "accuracy": float(np.mean(accs))}
            | {"missed": missed, "alternatives_detected": emb}
        )
        print(json.dumps(rows[-1]), flush=True)

    cli = run_cli(test_x, args.model_dir, args.config) if args.cli else None
    if cli:
        print(json.dumps({"cli": cli}), flush=True)

    detected = [r for r in rows if r["shift"] != "hflip"]
    summary = {
        "ood_scorer": (classifier.ood_info or {}).get("scorer"),  # None: saved without a guard
        "ood_guard": guard_settings(classifier.ood_info),
        "false_alarm_rate": round(false_alarms / len(clean_rows), 4),
        "alternative_false_alarms": alternative_false,
        "small_shifts": {
            r["shift"]: f"{r['detected']}/{r['of']}"
            for r in rows
            if r["shift"] in ("noise_10", "brightness_15")
        },
        "clean_batches": len(clean_rows),
        "detection_rate": round(
            sum(r["detected"] for r in detected) / sum(r["of"] for r in detected), 4
        ),
        "shift_kinds": len(detected),
        "report_10k_s": round(total_s, 2),
        "features_10k_s": round(features_s, 2),
        "evidently_10k_s": round(report_s, 2),
        "reference_fit_s": round(reference_s, 2),
        "batch_size": args.batch_size,
        "full_test_split_drifted": full_decision["drifted"],
        "cli_wall_s": cli["wall_s"] if cli else None,
        "cli_pipeline_run_s": cli["pipeline_run_s"] if cli else None,
        "cli_report": cli["report"] if cli else None,
        "seconds": round(time.perf_counter() - started, 1),
        "device": "cpu",
        "quick": args.quick,
    }
    if not args.quick:
        write_table(args, params, rows, clean_rows, column_false, summary, cli)
    print(json.dumps(summary))


def write_table(
    args: argparse.Namespace,
    params: MonitorParams,
    rows: list[dict[str, Any]],
    clean_rows: list[dict[str, Any]],
    column_false: dict[str, int],
    summary: dict[str, Any],
    cli: dict[str, Any] | None,
) -> None:
    """``bench/results/drift_cpu.md``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    max_share = max(d["share"] for d in clean_rows)
    lines = [
        "# Drift monitor: detection, false alarms, report time (CPU)\n",
        f"Machine: {machine()}. Command: `python bench/drift_detection.py "
        f"{' '.join(sys.argv[1:])}`. Model: `{args.model_dir}` (its OOD guard's scorer: "
        f"`{summary['ood_scorer']}`{summary['ood_guard']}); "
        "reference: Fashion-MNIST val split (6,000 images); batches of "
        f"{args.batch_size} test images; gate: drift share >= {params.drift.drift_share}, a "
        f"drifted column matching {params.gate.trigger_columns}, or more than "
        f"{params.gate.max_ood_share} of the batch over the OOD guard's threshold; Evidently's "
        "default tests (normed Wasserstein / Jensen-Shannon, threshold 0.1) unless the config "
        "says otherwise.\n",
        "| shift | what | detected | mean drifted share | fine accuracy on the batch |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        note = f" (missed: {', '.join(r['missed'])})" if r.get("missed") else ""
        lines.append(
            f"| {r['shift']} | {r['what']} | {r['detected']}/{r['of']}{note} | "
            f"{r['mean_share']:.2f} | "
            + ("n/a" if r["accuracy"] != r["accuracy"] else f"{r['accuracy']:.2%}")
            + " |"
        )
    lines += [
        "",
        f"False alarms: **{sum(d['drifted'] for d in clean_rows)} of {len(clean_rows)}** clean "
        f"bootstrap batches ({summary['false_alarm_rate']:.1%}); largest drifted share on a clean "
        f"batch {max_share:.2f}; fine accuracy on clean batches "
        f"{np.mean([d['accuracy'] for d in clean_rows]):.2%}. Columns that drifted on clean "
        "batches: "
        + (", ".join(f"{c} ({n})" for c, n in column_false.items() if n) or "none")
        + ".",
        "",
        f"Time over 10,000 test images (median of 3): features {summary['features_10k_s']} s "
        f"(one forward pass, PCA projection, statistics) + Evidently report with HTML "
        f"{summary['evidently_10k_s']} s = **{summary['report_10k_s']} s**; fitting the reference "
        f"(6,000 images, PCA) {summary['reference_fit_s']} s.",
    ]
    lines += alternatives_table(rows, clean_rows)
    if cli:
        lines += [
            "",
            f"One CLI run (`python -m pipelines.monitor_pipeline --batch <10k test images .npz> "
            f"--model-dir ...`): exit code {cli['exit_code']}, wall {cli['wall_s']} s, of which "
            f"the pipeline run {cli['pipeline_run_s']} s (steps: "
            + ", ".join(f"{k} {v} s" for k, v in cli["steps_s"].items())
            + f"); report: `{cli['report']}`.",
        ]
    (out / "drift_cpu.md").write_text("\n".join(lines) + "\n")
    facts = {"summary": summary, "rows": rows, "clean_batches": clean_rows, "cli": cli}
    (out / "drift_cpu.json").write_text(json.dumps(facts, indent=1, default=str))


def alternatives_table(rows: list[dict[str, Any]], clean_rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: gate variants and Evidently's embedding drift methods per shift; false alarms."""
    methods = list(clean_rows[0]["alternatives"])
    lines = [
        "",
        "The configured gate beside variants of it on the same reports (`pred only`: the gate "
        "before the OOD guard; `no ood_score` / `no ood share`: one OOD trigger off; `+ img "
        "range`: `img_min`, `img_max` as triggers too) and Evidently's embedding drift methods "
        "(`EmbeddingsDrift`, default settings) on the same `emb_pc*` columns (detected batches):",
        "",
        "| shift | gate | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for r in rows:
        cells = [f"{r['alternatives_detected'][m]}/{r['of']}" for m in methods]
        lines.append(f"| {r['shift']} | {r['detected']}/{r['of']} | " + " | ".join(cells) + " |")
    n = len(clean_rows)
    false = [f"{sum(d['alternatives'][m] for d in clean_rows)}/{n}" for m in methods]
    gate = sum(d["drifted"] for d in clean_rows)
    lines.append(f"| false alarms (clean) | {gate}/{n} | " + " | ".join(false) + " |")
    return lines


if __name__ == "__main__":
    main()
