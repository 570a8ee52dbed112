"""Step: play the Triple-GAN game; its classifier C goes on through the pipeline like any other."""

from __future__ import annotations

import logging
from typing import Annotated

from PIL import Image
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from models.classifier import ClassifierConfig, TrainedClassifier
from models.data.dataset import LabelledImages
from models.gan import PretrainGanConfig, TrainedGan
from models.triple import play_triple_game as play
from steps import artifacts, tracking
from steps.materializers import TrainedClassifierMaterializer, TrainedGanMaterializer
from steps.training.pretrain_gan import MlflowCallback

logger = logging.getLogger(__name__)


@step(
    output_materializers={
        artifacts.GAN: TrainedGanMaterializer,
        artifacts.CLASSIFIER: TrainedClassifierMaterializer,
    }
)
def play_triple_game(
    dataset: LabelledImages,
    trunk: TrainedGan | None,
    config: PretrainGanConfig,
    classifier: ClassifierConfig,
) -> tuple[
    Annotated[TrainedGan, ArtifactConfig(name=artifacts.GAN, artifact_type=ArtifactType.MODEL)],
    Annotated[
        TrainedClassifier,
        ArtifactConfig(name=artifacts.CLASSIFIER, artifact_type=ArtifactType.MODEL),
    ],
    Annotated[Image.Image, artifacts.CONDITIONAL_SAMPLES],
]:
    """C, G and D play on the train split (C's labels: ``classifier.label_fraction``).

    C's trunk starts from ``trunk``'s discriminator (a GAN pretrained by ``pretrain_gan``), or
    random when it is ``None``.

    Returns G and D, C's EMA as the classifier that calibration, evaluation, packaging and
    registration take next, and G's samples per tree node (one grid per level). The test split
    is not touched here.
    """
    resolved = config.for_data(dataset.image_shape, dataset.hierarchy.num_leaves)
    tracking.log_params(
        {f"gan.{k}": v for k, v in resolved.model_dump(exclude={"architecture", "triple"}).items()}
        | {f"gan.arch.{k}": v for k, v in resolved.architecture.model_dump().items()}
        | {f"gan.triple.{k}": v for k, v in (resolved.triple.model_dump().items())}
        | {f"classifier.{k}": v for k, v in classifier.model_dump().items()}
        | {"triple.trunk": "gan" if trunk is not None else "scratch"}
    )
    outcome = play(
        dataset,
        config,
        classifier,
        callbacks=[MlflowCallback()],
        trunk_state=trunk.discriminator_state if trunk is not None else None,
    )
    info = outcome.info
    tracking.log_metrics({k: v for k, v in info.items() if isinstance(v, float | int)})
    for level, png in outcome.grids.items():
        tracking.log_png(png, f"triple/samples_{level}.png")
    log_metadata(metadata={"triple": info})
    picture = outcome.grids_png() if outcome.grids else outcome.gan.samples_png
    return outcome.gan, outcome.classifier, tracking.png_image(picture) if picture else _blank()


def _blank() -> Image.Image:
    """A 1x1 white picture where C played alone (no generator to draw)."""
    return Image.new("RGB", (1, 1), "white")
