"""Robustness of a trained classifier, and what PGD adversarial fine-tuning buys.

1. The ``robustness`` section of the train config (``pipelines/configs/train.yaml``) is run on a
   saved, calibrated classifier exactly as the pipeline's ``evaluate_robustness`` step runs it:
   clean vs FGSM/PGD accuracy per level at each eps, graceful degradation, the corruption grid,
   and the seconds that work takes.
2. With ``--finetune``, the same classifier is fine-tuned with the ``classifier.adversarial``
   section of ``pipelines/configs/train_adversarial.yaml`` (the epochs ``fit_classifier`` appends
   after the clean ones, started from the saved weights), recalibrated on the val split as the
   pipeline's calibration step does, and measured the same way: clean and robust side by side,
   with the training seconds it added.

    python bench/robustness.py --quick
    python bench/robustness.py --classifier DIR --finetune

``DIR`` holds ``classifier.safetensors`` + ``classifier.json`` (``TrainedClassifier.save``, e.g.
the train pipeline's ``calibrated_classifier`` artifact). ``--quick`` trains a tiny classifier on a
data subset instead when no ``--classifier`` is given. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.attacks.adversarial_training import AdversarialTrainingConfig
from models.calibration.temperature import fit_temperatures
from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.training import (
    finetune_adversarially,
    fit_classifier,
)
from models.data.ingest import DatasetConfig, build_dataset
from models.gan.networks import GanArchitecture
from models.robustness.config import RobustnessConfig, level_keys
from models.robustness.evaluate import RobustnessResult, evaluate_robustness
from models.tree.merge import TreeTensors


def load_section(path: str, *keys: str) -> dict[str, Any]:
    """``parameters.<keys...>`` of a run config (empty when absent)."""
    node: Any = (yaml.safe_load(Path(path).read_text()) or {}).get("parameters", {})
    for key in keys:
        node = (node or {}).get(key, {})
    return node or {}


def recalibrate(model: torch.nn.Module, trained: TrainedClassifier, val_x, val_y) -> list[float]:
    """Per-level temperatures on the val split (what ``calibrate_classifier`` fits)."""
    logits = trained.logits(val_x, model)
    tt = TreeTensors(trained.tree, logits[0].device)
    labels = torch.from_numpy(trained.tree.all_level_labels(val_y)).to(logits[0].device)
    return [float(t) for t in fit_temperatures(logits, labels, tt)]


def quick_classifier(data, epochs: int = 5) -> TrainedClassifier:
    """A small scratch classifier for ``--quick`` runs without a saved one."""
    train_x, train_y = data.split("train")
    config = ClassifierConfig(init="scratch", feature_pool=2, hidden=64, epochs=epochs)
    arch = GanArchitecture(latent_dim=16, g_width=16, d_width=16)
    fit = fit_classifier(config, arch, data.hierarchy, train_x, train_y)
    return TrainedClassifier.from_model(fit.model, config, data.hierarchy, {"quick": True})


def fine_accuracy(trained: TrainedClassifier, x: np.ndarray, y: np.ndarray) -> float:
    """Calibrated global-decoding leaf accuracy on a whole split."""
    return float((trained.predict_proba(x).argmax(1) == y).mean())


def side_by_side(results: dict[str, RobustnessResult], names: list[str]) -> str:
    """Markdown: clean and attacked accuracy per level, one column per model."""
    models = list(results)
    head = "| attack | eps | level | " + " | ".join(models) + " |\n|---|---|---|"
    head += "---|" * len(models) + "\n"
    first = results[models[0]].metrics
    body = ""
    for name in names:
        cells = [f"{results[m].metrics[f'clean_accuracy_{name}']:.4f}" for m in models]
        body += f"| clean | 0 | {name} | " + " | ".join(cells) + " |\n"
    for attack, per_eps in first["attacks"].items():
        for eps in per_eps:
            for name in names:
                key = f"robust_accuracy_{name}_{attack}_eps{float(eps):g}"
                cells = [f"{results[m].metrics[key]:.4f}" for m in models]
                body += f"| {attack} | {eps} | {name} | " + " | ".join(cells) + " |\n"
    return head + body


def main() -> None:
    """Measure, write ``bench/results/robustness_cpu.md`` (full runs), print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/configs/train.yaml")
    parser.add_argument("--adversarial-config", default="pipelines/configs/train_adversarial.yaml")
    parser.add_argument("--classifier", help="a saved TrainedClassifier directory")
    parser.add_argument("--finetune", action="store_true", help="adversarial fine-tuning too")
    parser.add_argument(
        "--finetune-threads",
        type=int,
        help="CPU threads while fine-tuning (default: every core; 1 is faster on a busy machine)",
    )
    parser.add_argument("--quick", action="store_true", help="small subsets (same code path)")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("models.robustness", "models.attacks", "models.classifier"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    config = RobustnessConfig.model_validate(load_section(args.config, "robustness"))
    dataset = DatasetConfig.model_validate(load_section(args.config, "dataset"))
    adv_section = load_section(args.adversarial_config, "classifier", "adversarial")
    adversarial = AdversarialTrainingConfig.model_validate(adv_section)
    if args.quick:
        dataset = dataset.model_copy(
            update={"subsample": {"train": 2000, "val": 500, "test": 1000}}
        )
        config = config.model_copy(
            update={
                "attack_images": 200,
                "corruption_images": 200,
                "severities": [1, 3, 5],
                "neighbour_pool": 500,
                "ig_steps": 8,
            }
        )
        adversarial = adversarial.model_copy(update={"epochs": 1})

    data = build_dataset(dataset)
    train_x, train_y = data.split("train")
    val_x, val_y = data.split("val")
    test_x, test_y = data.split("test")
    if args.classifier:
        base = TrainedClassifier.load(args.classifier)
    elif args.quick:
        base = quick_classifier(data)
    else:
        parser.error("--classifier DIR is needed for a full run (or use --quick)")
    names = level_keys(base.tree)

    results: dict[str, RobustnessResult] = {}
    clean_full: dict[str, float] = {"default": fine_accuracy(base, test_x, test_y)}
    t0 = time.perf_counter()
    results["default"] = evaluate_robustness(base, test_x, test_y, config, train_x, train_y)
    step_seconds = time.perf_counter() - t0
    finetune_seconds = None
    if args.finetune:
        cfg = base.config.model_copy(update={"adversarial": adversarial})
        model = base.build()
        torch.set_num_threads(args.finetune_threads or len(os.sched_getaffinity(0)))
        history, finetune_seconds = finetune_adversarially(
            model, cfg, base.tree, (train_x, train_y), (val_x, val_y)
        )
        print(json.dumps({"finetune_history": history}), flush=True)
        tuned = TrainedClassifier.from_model(model, cfg, base.tree, {"adversarial_from": "default"})
        tuned.temperatures = recalibrate(model, tuned, val_x, val_y)
        clean_full["adversarial"] = fine_accuracy(tuned, test_x, test_y)
        results["adversarial"] = evaluate_robustness(
            tuned, test_x, test_y, config, train_x, train_y
        )

    m = results["default"].metrics
    gate_key = "robust_accuracy_fine_pgd_eps0.1"
    summary: dict[str, Any] = {
        "clean_fine_test": round(clean_full["default"], 4),
        "attack_images": m["attack_images"],
        **{
            f"{k}": round(v, 4)
            for k, v in m.items()
            if k.startswith(("clean_accuracy_", "robust_accuracy_fine_", "corruption_accuracy_"))
        },
        "robustness_seconds": round(step_seconds, 1),
        "device": "cpu",
        "quick": args.quick,
    }
    if "adversarial" in results:
        a = results["adversarial"].metrics
        summary |= {
            "adv_clean_fine_test": round(clean_full["adversarial"], 4),
            "adv_clean_accuracy_fine": round(a["clean_accuracy_fine"], 4),
            "adv_" + gate_key: round(a.get(gate_key, float("nan")), 4),
            "finetune_seconds": round(finetune_seconds or 0.0, 1),
            "target_met": bool(a.get(gate_key, 0.0) >= 0.60 and clean_full["adversarial"] >= 0.85),
        }
    if not args.quick:
        machine = f"{platform.machine()} CPU, {os.cpu_count()} cores (no GPU)"
        lines = [
            "# Robustness (Fashion-MNIST test)\n",
            f"Machine: {machine}; command: `python bench/robustness.py {' '.join(sys.argv[1:])}`; "
            f"classifier `{args.classifier}` (full-test clean fine accuracy "
            f"{clean_full['default']:.4f}); attacks on a stratified subset of "
            f"{m['attack_images']} test images, corruptions on {m['corruption_images']}; "
            f"ART FGSM/PGD L-inf on [0, 1] pixels, PGD {config.pgd_steps} steps of "
            f"{config.pgd_step_ratio:g} x eps with a random start.\n",
            "## Attacks: accuracy per level, and coarse levels right when the leaf is wrong\n",
            results["default"].tables["attacks"],
            "## Corruptions: mean over severities\n",
            results["default"].tables["corruptions"],
            f"Seconds of the robustness step's work with the train.yaml settings: "
            f"{step_seconds:.1f} ({m['seconds']}).\n",
        ]
        if "adversarial" in results:
            a = results["adversarial"].metrics
            lines += [
                "## PGD adversarial fine-tuning, side by side\n",
                f"Fine-tuned from the default classifier's weights with "
                f"`{json.dumps(adversarial.model_dump())}` (`{args.adversarial_config}`), "
                f"recalibrated on val; fine-tuning took {finetune_seconds:.1f} s "
                f"(threads: {args.finetune_threads or os.cpu_count()}). Full-test "
                f"clean fine accuracy: default {clean_full['default']:.4f}, adversarial "
                f"{clean_full['adversarial']:.4f}. Target PGD eps=0.1 fine >= 0.60 at clean "
                f">= 0.85: {'met' if summary['target_met'] else 'NOT met'} "
                f"({a[gate_key]:.4f}).\n",
                side_by_side(results, names),
                "### Adversarially fine-tuned model: attacks and corruptions\n",
                results["adversarial"].tables["attacks"],
                results["adversarial"].tables["corruptions"],
            ]
        lines.append(f"\nSettings: {json.dumps(config.model_dump(), default=str)}\n")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "robustness_cpu.md").write_text("\n".join(lines))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
