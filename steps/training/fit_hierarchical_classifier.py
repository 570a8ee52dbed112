"""Step: fit one classifier head per tree level on the GAN discriminator's trunk."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from models.classifier import ClassifierConfig, TrainedClassifier
from models.data.sharded import Dataset
from models.gan.io import TrainedGan
from models.jobs import fit_classifier_job
from models.runtime.distributed import DistributedConfig
from steps import artifacts, tracking
from steps.materializers import TrainedClassifierMaterializer

logger = logging.getLogger(__name__)


@step(output_materializers=TrainedClassifierMaterializer)
def fit_hierarchical_classifier(
    dataset: Dataset,
    gan: TrainedGan,
    config: ClassifierConfig,
    distributed: DistributedConfig | None = None,
) -> Annotated[
    TrainedClassifier, ArtifactConfig(name=artifacts.CLASSIFIER, artifact_type=ArtifactType.MODEL)
]:
    """Train on the train split (``label_fraction`` of its labels), watch the val split.

    The test split is not touched here. With ``distributed.world_size > 1`` the fit runs under
    DDP (torchrun here, or the multi-pod step before this one).
    """
    tracking.log_params({f"classifier.{k}": v for k, v in config.model_dump().items()})

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        tracking.log_metrics(
            {f"classifier/{k}": v for k, v in metrics.items() if k != "epoch"}, step=epoch
        )

    result = fit_classifier_job(
        config, gan, dataset, distributed or DistributedConfig(), on_epoch=on_epoch
    )
    info = {
        "dataset_hash": dataset.content_hash,
        "gan_run_key": gan.info.get("run_key", ""),
        "init": config.init,
        "label_fraction": config.label_fraction,
        "labelled_images": int(len(result.labelled_indices)),
        "epochs": len(result.history),
        "train_seconds": round(result.seconds, 1),
        "images_per_s": round(result.images_per_second, 1),
        "val_fine_accuracy_uncalibrated": round(
            result.history[-1].get("val_fine_accuracy", 0.0), 4
        ),
    }
    if config.adversarial is not None:
        # what the PGD fine-tuning epochs cost, on top of the clean ones
        info["adversarial_epochs"] = config.adversarial.epochs
        info["adversarial_seconds"] = round(result.adversarial_seconds, 1)
    logger.info("Classifier trained: %s", info)
    log_metadata(metadata={"classifier": info})
    return TrainedClassifier.from_model(result.model, config, dataset.hierarchy, info)
