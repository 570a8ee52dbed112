"""The guard on each device: does a GPU serve the verdicts the CPU serves?

The service runs on a GPU when one is there (float32: int8 is CPU-only), with the threshold the
guard was fitted with. On the CPU the served score is computed in NumPy
(:class:`~models.ood.served_score.ServedScore`, its kNN search in two stages); on a GPU it is the
sum of the guard's torch components, with cuDNN's default TF32 convolutions. This bench scores
the Fashion-MNIST test split and the offline OOD sets with the same saved model on each device
and reports, against the first device: the leaf decisions that differ, the largest score
difference (also in units of the threshold's distance to the test scores' median), the OOD
verdicts that differ, AUROC and the flagged share per set on each device, images/s at batch 256
and the median latency of one image. ``cuda-strict`` is CUDA with TF32 off (to tell TF32's part
from the rest).

    python bench/guard_devices.py --model-dir DIR [--devices cpu cuda cuda-strict] [--quick]

Needs torch, pydantic, safetensors, Pillow and the test split's IDX files under
``<data-dir>/FashionMNIST/raw`` (the train files are not read). Writes ``guard_devices.md`` and
``.json`` under ``--out`` (default ``$OUT``, else ``bench/results``).

Four OOD sets need scikit-learn (digits) or scikit-image (photos, faces, documents), which a lent
GPU machine (torch alone) lacks; build them here and carry the file, so that every device scores
the same images (the test split is read from ``--data-dir`` there too):

    python bench/guard_devices.py --save-sets sets.npz [--quick]    # here: the OOD sets
    python bench/guard_devices.py --model-dir DIR --sets sets.npz   # there
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
from models.classifier.io import TrainedClassifier  # noqa: E402
from models.data.sources import find_fashion_mnist_file, read_idx  # noqa: E402
from models.ood import GuardedPredictor, build_ood_sets  # noqa: E402
from models.ood.evaluate import auroc  # noqa: E402

BATCH = 256
LATENCY_CALLS = 200


def test_images(data_dir: Path, limit: int | None) -> np.ndarray:
    """The Fashion-MNIST test images as uint8 ``[N, 28, 28, 1]``."""
    path = find_fashion_mnist_file(data_dir, "test_images")
    if path is None:
        raise SystemExit(f"no t10k-images-idx3-ubyte[.gz] under {data_dir}/FashionMNIST/raw")
    return read_idx(path)[:limit, :, :, None].copy()  # writable, as a decoded request is


def save_sets(path: Path, sets: dict[str, np.ndarray], missing: dict[str, str]) -> None:
    """The OOD sets as one ``.npz`` (uint8 arrays, nothing pickled; the test split is not in it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    why = np.array([f"{name}: {reason}" for name, reason in sorted(missing.items())], np.str_)
    np.savez_compressed(path, **sets, missing_=why)


def load_sets(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """What :func:`save_sets` wrote: ``{set: uint8 [N, H, W, C]}`` and the sets left out there."""
    with np.load(path, allow_pickle=False) as archive:
        sets = {name: archive[name] for name in archive.files if name != "missing_"}
        why = [str(line) for line in archive["missing_"]] if "missing_" in archive else []
    bad = [
        f"{k} {v.dtype} {v.shape}" for k, v in sets.items() if v.dtype != np.uint8 or v.ndim != 4
    ]
    if bad:
        raise SystemExit(f"{path}: expected uint8 [N, H, W, C] arrays, got {', '.join(bad)}")
    return sets, dict(line.split(": ", 1) for line in why)


def on_device(
    classifier: TrainedClassifier, name: str, images: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Leaf decisions and served scores of every set on one device, with its speed."""
    device = "cuda" if name.startswith("cuda") else name
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"device {name}: CUDA is not available here")
        torch.backends.cudnn.allow_tf32 = name != "cuda-strict"
    predictor = GuardedPredictor(classifier, device, "none")
    if predictor.threshold is None:
        raise SystemExit("the model has no OOD guard (fit one: bench/ood_detection.py)")
    one = images["test"][:1]
    for _ in range(3):  # warm-up: lazy initialisation, cuDNN's algorithm choice
        predictor.scores(one)
        predictor.scores(images["test"][:BATCH])
    out: dict[str, Any] = {"leaves": {}, "scores": {}, "seconds": 0.0, "images": 0}
    for set_name, x in images.items():
        started = time.perf_counter()
        parts = [predictor.scores(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
        _sync(device)
        out["seconds"] += time.perf_counter() - started
        out["images"] += len(x)
        out["leaves"][set_name] = np.concatenate([p.argmax(1) for p, _ in parts])
        out["scores"][set_name] = np.concatenate([s for _, s in parts]).astype(np.float64)
    times = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        predictor.classify(one)
        times.append(time.perf_counter() - started)
    out["one_image_ms"] = 1000 * float(np.median(times))
    out["threshold"] = float(predictor.threshold)
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def summary(name: str, run: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """One device's row: agreement with the reference device, AUROC and flagged share per set."""
    threshold = run["threshold"]
    names = list(run["scores"])  # the test split first
    test = run["scores"]["test"]
    margin = threshold - float(np.median(test))  # how far a typical test image is from the line
    diff = np.concatenate([np.abs(run["scores"][s] - reference["scores"][s]) for s in names])
    leaves = [run["leaves"][s] != reference["leaves"][s] for s in names]
    verdicts = [
        (run["scores"][s] > threshold) != (reference["scores"][s] > reference["threshold"])
        for s in names
    ]
    return {
        "device": name,
        "threshold": round(threshold, 4),
        "images_per_s": round(run["images"] / run["seconds"], 1),
        "one_image_ms": round(run["one_image_ms"], 3),
        "leaves_differ": int(sum(v.sum() for v in leaves)),
        "verdicts_differ": int(sum(v.sum() for v in verdicts)),
        "max_abs_score_diff": float(diff.max()),
        "max_diff_over_margin": float(diff.max() / margin),
        "test_flagged": round(float((test > threshold).mean()), 4),
        "sets": {
            s: {
                "auroc": round(auroc(test, run["scores"][s]), 4),
                "flagged": round(float((run["scores"][s] > threshold).mean()), 4),
            }
            for s in names
            if s != "test"
        },
    }


def markdown(document: dict[str, Any]) -> str:
    """The results page."""
    rows = document["rows"]
    sets = list(rows[0]["sets"])
    lines = [
        "# The OOD guard on each device\n",
        f"Machine: {document['machine']}. Command: `{document['command']}`. Test images: "
        f"{document['test_images']}; OOD sets of {document['set_size']} images (fewer where "
        f"the source has fewer). Against `{rows[0]['device']}`: leaf decisions and OOD verdicts "
        "that differ (of every image scored), the largest score difference, and that over the "
        "distance from the test scores' median to the threshold.\n",
        "| device | leaves differ | verdicts differ | max abs score diff | / margin | test "
        "flagged | images/s (batch 256) | one image (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['leaves_differ']} | {r['verdicts_differ']} | "
            f"{r['max_abs_score_diff']:.2e} | {r['max_diff_over_margin']:.2e} | "
            f"{100 * r['test_flagged']:.2f} % | {r['images_per_s']:.0f} | "
            f"{r['one_image_ms']:.2f} |"
        )
    lines += ["\nAUROC (test vs set) and share flagged, per device:\n"]
    lines.append("| set | " + " | ".join(r["device"] for r in rows) + " |")
    lines.append("|---|" + "---|" * len(rows))
    for s in sets:
        cells = [
            f"{r['sets'][s]['auroc']:.4f} / {100 * r['sets'][s]['flagged']:.1f} %" for r in rows
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    if document["missing"]:
        lines.append(f"\nSets left out: {document['missing']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Score every set on every device, compare, write the page; the headline last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="a classifier saved with its guard")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda", "cuda-strict"])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--set-size", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="fewer images, same code path")
    parser.add_argument("--sets", type=Path, help="score the images of this file (--save-sets)")
    parser.add_argument("--save-sets", type=Path, help="write the OOD sets here, stop")
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    args = parser.parse_args()
    test = test_images(Path(args.data_dir), 1000 if args.quick else None)
    if args.sets is None:
        sets, missing = build_ood_sets(test, n=100 if args.quick else args.set_size, seed=0)
    else:
        sets, missing = load_sets(args.sets)
    if args.save_sets is not None:
        save_sets(args.save_sets, sets, missing)
        print(f"wrote {args.save_sets}: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
        return
    if args.model_dir is None:
        parser.error("--model-dir is required (except with --save-sets)")
    tf32_default = torch.backends.cudnn.allow_tf32  # what a service on a GPU runs with
    classifier = TrainedClassifier.load(args.model_dir)
    images = {"test": test, **sets}
    set_size = max((len(v) for v in sets.values()), default=0)
    runs = {name: on_device(classifier, name, images) for name in args.devices}
    reference = runs[args.devices[0]]
    document = {
        "machine": machine(),
        "command": "python bench/guard_devices.py " + " ".join(sys.argv[1:]),
        "sets_file": str(args.sets) if args.sets else None,
        "test_images": len(test),
        "set_size": set_size,
        "missing": missing,
        "cudnn_allow_tf32_default": tf32_default,
        "rows": [summary(name, run, reference) for name, run in runs.items()],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "guard_devices_quick" if args.quick else "guard_devices"
    (out / f"{stem}.json").write_text(json.dumps(document, indent=1))
    (out / f"{stem}.md").write_text(markdown(document))
    print(json.dumps({r["device"]: r["verdicts_differ"] for r in document["rows"]}))


if __name__ == "__main__":
    main()
