"""Step: fit the out-of-distribution guard and set its threshold on the validation split."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from models.classifier.io import TrainedClassifier
from models.data.sharded import Dataset, ShardedDataset
from models.gan.io import TrainedGan
from models.ood import OodConfig, fit_guard, with_guard
from models.ood.evaluate import score_histogram_png
from steps import artifacts, tracking
from steps.materializers import TrainedClassifierMaterializer

logger = logging.getLogger(__name__)


@step(output_materializers={artifacts.GUARDED_CLASSIFIER: TrainedClassifierMaterializer})
def fit_ood_guard(
    classifier: TrainedClassifier, gan: TrainedGan, dataset: Dataset, config: OodConfig
) -> tuple[
    Annotated[
        TrainedClassifier,
        ArtifactConfig(name=artifacts.GUARDED_CLASSIFIER, artifact_type=ArtifactType.MODEL),
    ],
    Annotated[dict[str, Any], artifacts.OOD_GUARD],
    Annotated[Image.Image, artifacts.OOD_VAL_HISTOGRAM],
]:
    """Gaussians on the train split, the pretrained discriminator kept, threshold on val.

    The calibrated classifier comes back carrying the guard (saved with it), so packaging, the
    registry and the bento take it along. The test split is not read here.
    """
    if isinstance(dataset, ShardedDataset):  # shards are written shuffled: the head is a sample
        train = dataset.head("train", config.fit_images)
    else:
        train = dataset.split("train")
    # a tree-conditioned D (gan.mode triple) judges (image, path) pairs: no realness of its own
    discriminator = gan.discriminator() if gan.conditioning is None else None
    guard, val = fit_guard(classifier, discriminator, *train, dataset.split("val")[0], config)
    report = {"scorer": guard.scorer, "parts": guard.parts, "threshold": guard.threshold}
    report["runtime_thresholds"] = guard.runtime_thresholds
    report |= guard.info
    logger.info("OOD guard: %s", report)
    png = score_histogram_png(val.score, {}, guard.threshold, f"OOD score ({guard.scorer}), val")
    tracking.log_metrics(
        {"ood_threshold": guard.threshold, "ood_val_flagged": report["val_flagged_share"]}
        | {f"ood_threshold_{k.replace('-', '_')}": v for k, v in guard.runtime_thresholds.items()}
    )
    tracking.log_json(report, "ood/guard.json")
    tracking.log_png(png, "ood/val_histogram.png")
    log_metadata(metadata={"ood_guard": report})
    return with_guard(classifier, guard), report, tracking.png_image(png)
