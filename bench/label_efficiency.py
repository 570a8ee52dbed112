"""Label-efficiency study: does GAN pretraining pay when labels are scarce?

For each label fraction (1 %, 10 %, 100 % by default) the same hierarchical classifier (same
architecture, same number of optimiser steps) is trained from a GAN-pretrained trunk and from a
randomly initialised one, and scored on the test split (fine = leaf accuracy, coarse = top-level
accuracy). Where the config asks for it, a semi-supervised GAN that sees only the same labelled
subset is a third arm. Everything else comes from the config's ``parameters`` (the same sections
as the train pipeline), so the study measures the product's own settings.

    python bench/label_efficiency.py --quick
    python bench/label_efficiency.py --config pipelines/configs/label_efficiency.yaml

The last line printed is one JSON object with the headline figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.training import fit_classifier
from models.data.dataset import LabelledImages, stratified_fraction
from models.data.ingest import DatasetConfig, build_dataset
from models.evaluation.metrics import hierarchical_metrics
from models.gan.config import GanTrainConfig
from models.gan.training import GanTrainer


class StudyConfig(BaseModel):
    """``study:`` section: which fractions, arms and seeds."""

    model_config = ConfigDict(extra="forbid")

    fractions: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0])
    arms: list[str] = Field(default_factory=lambda: ["scratch", "gan"], description="+ gan-semi")
    seeds: list[int] = Field(default_factory=lambda: [0])
    semi_fractions: list[float] | None = Field(None, description="gan-semi only at these")
    checkpoint_root: str = "checkpoints"


class StudyParams(BaseModel):
    """The config file's ``parameters``."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    gan: GanTrainConfig = Field(default_factory=GanTrainConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)


def pretrain(
    data: LabelledImages, config: GanTrainConfig, root: str, labelled: np.ndarray | None = None
):
    """Train (or resume/reuse, by run key) a GAN on the train split."""
    x, y = data.split("train")
    if labelled is not None:
        config = config.model_copy(update={"mode": "semi-supervised"})
    config = config.for_data(data.image_shape, data.hierarchy.num_leaves)
    # the labelled subset is part of what the semi-supervised run is: it goes into the run key
    data_key = data.content_hash
    if labelled is not None:
        data_key += "-labelled-" + hashlib.sha256(labelled.tobytes()).hexdigest()[:12]
    # same key as the train pipeline's pretrain_gan for the same settings: its run is reused
    run_dir = Path(root) / config.run_key(data_key)
    trainer = GanTrainer(config, x, run_dir, data_key, labels=y, labelled_indices=labelled)
    result = trainer.fit(resume=True)
    return config.architecture, {
        k: v.detach().cpu() for k, v in result.discriminator.state_dict().items()
    }


def main() -> None:
    """Run the study and print the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/configs/label_efficiency.yaml")
    parser.add_argument(
        "--quick", action="store_true", help="small data, few steps (same code path)"
    )
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    raw = yaml.safe_load(Path(args.config).read_text()) or {}
    params = StudyParams.model_validate(raw.get("parameters", {}))
    if args.quick:
        params.dataset.subsample = {"train": 2000, "val": 200, "test": 1000}
        params.gan = params.gan.model_copy(update={"steps": 60, "progress": False})
        params.classifier = params.classifier.model_copy(update={"epochs": 2})
        params.study.fractions = [0.05, 1.0]
        params.study.semi_fractions = [0.05]
        params.study.checkpoint_root = "/tmp/hiergan-label-efficiency-quick"

    started = time.perf_counter()
    data = build_dataset(params.dataset)
    tree = data.hierarchy
    train_x, train_y = data.split("train")
    test_x, test_y = data.split("test")
    arch, gan_state = pretrain(data, params.gan, params.study.checkpoint_root)
    full_steps = params.classifier.epochs * max(1, len(train_y) // params.classifier.batch_size)
    rows: list[dict[str, Any]] = []
    for seed in params.study.seeds:
        for fraction in params.study.fractions:
            labelled = stratified_fraction(train_y, fraction, seed)
            for arm in params.study.arms:
                semi_at = params.study.semi_fractions
                if arm == "gan-semi" and semi_at is not None and fraction not in semi_at:
                    continue
                init_state, arm_arch = gan_state, arch
                if arm == "gan-semi":
                    arm_arch, init_state = pretrain(
                        data, params.gan, params.study.checkpoint_root, labelled
                    )
                cfg = params.classifier.model_copy(
                    update={
                        "init": "scratch" if arm == "scratch" else "gan",
                        "label_fraction": fraction,
                        "seed": seed,
                        "min_steps": full_steps,  # the same optimiser budget at every fraction
                    }
                )
                t0 = time.perf_counter()
                fit = fit_classifier(
                    cfg,
                    arm_arch.model_copy(update={"num_classes": 0}),
                    tree,
                    train_x,
                    train_y,
                    discriminator_state=None if arm == "scratch" else init_state,
                )
                model = TrainedClassifier.from_model(fit.model, cfg, tree, {})
                m = hierarchical_metrics(
                    model.predict_proba(test_x, calibrated=False), test_y, tree
                )
                row = {
                    "seed": seed,
                    "fraction": fraction,
                    "labelled": int(len(labelled)),
                    "arm": arm,
                    "fine": round(m["accuracy_fine"], 4),
                    "coarse": round(m[f"accuracy_{tree.level_names[0]}"], 4),
                    "steps": len(fit.history)
                    * max(1, len(labelled) // min(cfg.batch_size, len(labelled))),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)

    def mean(arm: str, fraction: float, key: str) -> float:
        vals = [r[key] for r in rows if r["arm"] == arm and r["fraction"] == fraction]
        return float(np.mean(vals)) if vals else float("nan")

    lo = min(params.study.fractions)
    summary = {
        "fractions": params.study.fractions,
        "seeds": params.study.seeds,
        **{
            f"{arm}_fine_{f:g}": round(mean(arm, f, "fine"), 4)
            for arm in params.study.arms
            for f in params.study.fractions
            if not np.isnan(mean(arm, f, "fine"))
        },
        "gain_at_lowest_fraction": round(mean("gan", lo, "fine") - mean("scratch", lo, "fine"), 4),
        "seconds": round(time.perf_counter() - started, 1),
        "test_images": int(len(test_y)),
        "quick": args.quick,
    }
    if "gan-semi" in params.study.arms:
        summary["semi_gain_at_lowest_fraction"] = round(
            mean("gan-semi", lo, "fine") - mean("scratch", lo, "fine"), 4
        )
    if not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        lines = [
            "# Label efficiency: GAN-pretrained vs from scratch\n",
            f"Machine: {platform.machine() + ' CPU, ' + str(os.cpu_count()) + ' cores'}; command: "
            f"`python bench/label_efficiency.py {' '.join(sys.argv[1:])}`; "
            f"seeds {params.study.seeds}; test split ({len(test_y)} images); every arm trains "
            f"{full_steps} optimiser steps with the same architecture.\n",
            "| labels | arm | fine accuracy | coarse accuracy |",
            "|---|---|---|---|",
        ]
        for f in params.study.fractions:
            for arm in params.study.arms:
                if np.isnan(mean(arm, f, "fine")):
                    continue
                fine, coarse = mean(arm, f, "fine"), mean(arm, f, "coarse")
                lines.append(f"| {f:.0%} | {arm} | {fine:.4f} | {coarse:.4f} |")
        lines.append(f"\nSettings: {json.dumps(params.model_dump(), default=str)}\n")
        (out / "label_efficiency.md").write_text("\n".join(lines))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
