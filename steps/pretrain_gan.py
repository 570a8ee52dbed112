"""Step: pretrain the GAN whose discriminator becomes the feature extractor."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from models.data import LabelledImages
from models.gan import build_gan
from models.gan_io import TrainedGan
from models.gan_training import GanTrainConfig, GanTrainer, TrainerCallback
from models.probe import probe_accuracy
from steps import artifacts, tracking
from steps.materializers import TrainedGanMaterializer

logger = logging.getLogger(__name__)


class PretrainGanConfig(GanTrainConfig):
    """The GAN run plus where it checkpoints and how its features are probed."""

    checkpoint_root: str = Field(
        "checkpoints", description="runs checkpoint into <root>/<run key>; a re-run resumes"
    )
    resume: bool = True
    probe_train_size: int = Field(10000, ge=10, description="train images the probe is fitted on")
    probe_random_inits: int = Field(3, ge=1, description="random discriminators averaged")


class MlflowCallback(TrainerCallback):
    """Losses and images/s as MLflow metrics; sample grids as MLflow images."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Log the step's metrics with ``gan/`` prefixes."""
        tracking.log_metrics({f"gan/{k}": v for k, v in metrics.items()}, step=step)

    def on_samples(self, step: int, png: bytes) -> None:
        """Log the fixed-noise grid of this step."""
        tracking.log_png(png, f"gan/samples/step_{step:07d}.png")


@step(output_materializers=TrainedGanMaterializer)
def pretrain_gan(
    dataset: LabelledImages, config: PretrainGanConfig
) -> Annotated[TrainedGan, ArtifactConfig(name=artifacts.GAN, artifact_type=ArtifactType.MODEL)]:
    """Train the GAN on the train split; probe its features against a random discriminator.

    The image size and channels of the architecture follow the dataset; in semi-supervised mode
    the discriminator gets one logit per leaf class.
    """
    train_x, train_y = dataset.split("train")
    config = config.for_data(dataset.image_shape, dataset.hierarchy.num_leaves)
    run_key = config.run_key(dataset.content_hash)
    run_dir = Path(config.checkpoint_root) / run_key
    tracking.log_params(
        {f"gan.{k}": v for k, v in config.model_dump(exclude={"architecture"}).items()}
        | {f"gan.arch.{k}": v for k, v in config.architecture.model_dump().items()}
        | {"gan.run_key": run_key}
    )
    trainer = GanTrainer(
        config, train_x, run_dir, dataset.content_hash, labels=train_y, callbacks=[MlflowCallback()]
    )
    started = time.perf_counter()
    result = trainer.fit(resume=config.resume)
    train_seconds = time.perf_counter() - started

    # Linear probe, per tree level, on frozen features: the trained D beside randomly initialised
    # Ds of the same architecture (mean over `probe_random_inits` seeds: a single random init
    # varies by about a point), all fitted on the same train subset and scored on val.
    val_x, val_y = dataset.split("val")
    tree = dataset.hierarchy
    n = min(config.probe_train_size, len(train_x))
    probe_args = (
        train_x[:n],
        tree.all_level_labels(train_y[:n]),
        val_x,
        tree.all_level_labels(val_y),
        tree.level_sizes,
    )
    trained = probe_accuracy(result.discriminator, *probe_args)
    random = np.mean(
        [
            probe_accuracy(
                build_gan(config.architecture, config.seed + 10_000 + i)[1].to(trainer.device),
                *probe_args,
            )
            for i in range(config.probe_random_inits)
        ],
        axis=0,
    )
    levels = tree.level_names
    probes = {f"probe_trained_{lvl}": float(a) for lvl, a in zip(levels, trained, strict=True)}
    probes |= {f"probe_random_{lvl}": float(a) for lvl, a in zip(levels, random, strict=True)}
    info = {
        "mode": config.mode,
        "loss": config.loss,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "images_per_s": round(result.images_per_second, 1),
        "train_seconds": round(train_seconds, 1),
        "device": str(trainer.device),
        "run_key": run_key,
        "dataset_hash": dataset.content_hash,
        "labelled_images": int(len(result.labelled_indices))
        if result.labelled_indices is not None
        else 0,
        **{k: round(v, 4) for k, v in probes.items()},
    }
    logger.info("GAN pretraining: %s", info)
    table = "\n".join(
        f"| {lvl} | {probes[f'probe_trained_{lvl}']:.4f} | {probes[f'probe_random_{lvl}']:.4f} |"
        for lvl in levels
    )
    tracking.log_metrics({k: v for k, v in info.items() if isinstance(v, float | int)})
    tracking.log_text(
        "| level | trained D | random D |\n|---|---|---|\n" + table, "gan/linear_probe.md"
    )
    log_metadata(metadata={"gan": info})
    return TrainedGan.from_networks(
        result.generator, result.discriminator, info, samples_png=trainer.sample_grid()
    )
