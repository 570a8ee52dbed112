"""A profile's model end to end with torch alone: GAN, classifier, calibration, test scores.

What the train pipeline's steps do between ``pretrain_gan`` and ``evaluate_classifier``, without
ZenML, MLflow or pictures, so that benchmarks can repeat it over seeds and a bare GPU machine can
run it (torch, numpy, pydantic, PyYAML). The GAN checkpoints under ``checkpoint_root/<run key>``
as the pipeline's does, so a run cut short resumes, and a pipeline run of the same settings is
reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.calibration.calibrate import calibrate
from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.training import fit_classifier
from models.data.dataset import LabelledImages
from models.evaluation.report import score_split
from models.gan.config import GanTrainConfig
from models.gan.training import GanTrainer


@dataclass
class ProfileRun:
    """The calibrated classifier of one run, its test scores, calibration and timings."""

    classifier: TrainedClassifier
    test: dict[str, Any]
    calibration: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def pretrain_discriminator(
    data: LabelledImages, config: GanTrainConfig, checkpoint_root: str | Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train (or resume) the GAN on the train split; its discriminator's weights and facts."""
    train_x, train_y = data.split("train")
    config = config.for_data(data.image_shape, data.hierarchy.num_leaves)
    run_key = config.run_key(data.content_hash)
    trainer = GanTrainer(
        config, train_x, Path(checkpoint_root) / run_key, data.content_hash, labels=train_y
    )
    result = trainer.fit(resume=True)
    state = {k: v.detach().cpu() for k, v in result.discriminator.state_dict().items()}
    facts = {
        "run_key": run_key,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "images_per_s": round(result.images_per_second, 1),
    }
    return state, facts


def run_profile(
    data: LabelledImages,
    gan: GanTrainConfig,
    classifier: ClassifierConfig,
    checkpoint_root: str | Path = "checkpoints",
    evaluate_test: bool = True,
) -> ProfileRun:
    """GAN pretraining (unless ``classifier.init`` is scratch), classifier, calibration, test.

    Args:
        data: the dataset artifact (train, val and test splits).
        gan: the GAN's settings (its seed is the run's GAN seed).
        classifier: the classifier's settings (its seed is the run's classifier seed).
        checkpoint_root: where the GAN checkpoints (resumed by run key).
        evaluate_test: score the test split (:func:`~models.evaluation.report.score_split`).
    """
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    state, gan_facts = None, {}
    if classifier.init == "gan":
        state, gan_facts = pretrain_discriminator(data, gan, checkpoint_root)
    seconds["gan"] = time.perf_counter() - t0
    arch = gan.for_data(data.image_shape, data.hierarchy.num_leaves).architecture
    t0 = time.perf_counter()
    fit = fit_classifier(
        classifier,
        arch,
        data.hierarchy,
        *data.split("train"),
        *data.split("val"),
        discriminator_state=state,
    )
    seconds["classifier"] = time.perf_counter() - t0
    info = {"dataset_hash": data.content_hash, "gan": gan_facts, "init": classifier.init}
    trained = TrainedClassifier.from_model(fit.model, classifier, data.hierarchy, info)
    t0 = time.perf_counter()
    cal = calibrate(trained, *data.split("val"), diagram=False)
    seconds["calibration"] = time.perf_counter() - t0
    test: dict[str, Any] = {}
    if evaluate_test:
        t0 = time.perf_counter()
        test = score_split(cal.classifier, *data.split("test")).metrics
        seconds["evaluation"] = time.perf_counter() - t0
    return ProfileRun(cal.classifier, test, cal.report, seconds, fit.history)
