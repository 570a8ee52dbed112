"""Step: pretrain the GAN whose discriminator becomes the feature extractor."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from models.data.sharded import Dataset
from models.gan import PretrainGanConfig, TrainedGan, TrainerCallback
from models.gan.pretrain import probe_table
from models.jobs import pretrain_gan_job
from models.runtime.distributed import DistributedConfig
from steps import artifacts, tracking
from steps.materializers import TrainedGanMaterializer

logger = logging.getLogger(__name__)


class MlflowCallback(TrainerCallback):
    """Losses and images/s as MLflow metrics; sample grids as MLflow images.

    Args:
        prefix: what the metric and image names start with (``gan``; ``trunk_gan`` for the GAN
            pretrained before a Triple-GAN game, which logs ``gan`` itself in the same run).
    """

    def __init__(self, prefix: str = "gan") -> None:
        self.prefix = prefix

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Log the step's metrics under ``<prefix>/``."""
        tracking.log_metrics({f"{self.prefix}/{k}": v for k, v in metrics.items()}, step=step)

    def on_samples(self, step: int, png: bytes) -> None:
        """Log the fixed-noise grid of this step."""
        tracking.log_png(png, f"{self.prefix}/samples/step_{step:07d}.png")


@step(output_materializers=TrainedGanMaterializer)
def pretrain_gan(
    dataset: Dataset,
    config: PretrainGanConfig,
    distributed: DistributedConfig | None = None,
    prefix: str = "gan",
) -> Annotated[TrainedGan, ArtifactConfig(name=artifacts.GAN, artifact_type=ArtifactType.MODEL)]:
    """Train the GAN on the train split; probe its features against a random discriminator.

    The image size and channels of the architecture follow the dataset; in semi-supervised mode
    the discriminator gets one logit per leaf class. With ``distributed.world_size > 1`` the
    training runs under DDP (torchrun here, or the multi-pod step before this one). MLflow
    params, metrics and files are named ``<prefix>.*`` / ``<prefix>/*`` (``trunk_gan`` before a
    Triple-GAN game, whose own GAN logs as ``gan`` in the same MLflow run).
    """
    resolved = config.for_data(dataset.image_shape, dataset.hierarchy.num_leaves)
    tracking.log_params(
        {f"{prefix}.{k}": v for k, v in resolved.model_dump(exclude={"architecture"}).items()}
        | {f"{prefix}.arch.{k}": v for k, v in resolved.architecture.model_dump().items()}
        | {f"{prefix}.run_key": resolved.run_key(dataset.content_hash)}
    )
    gan = pretrain_gan_job(
        dataset, config, distributed or DistributedConfig(), callbacks=[MlflowCallback(prefix)]
    )
    info = gan.info
    key = "" if prefix == "gan" else f"{prefix}."  # the default GAN's facts keep their names
    tracking.log_metrics({key + k: v for k, v in info.items() if isinstance(v, float | int)})
    tracking.log_text(probe_table(info, dataset.hierarchy.level_names), f"{prefix}/linear_probe.md")
    log_metadata(metadata={"gan": info})
    return gan
