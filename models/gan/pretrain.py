"""GAN pretraining as the train pipeline runs it: a resumable run, then its features probed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from models.data.sharded import Dataset, training_images
from models.gan.config import GanTrainConfig
from models.gan.io import TrainedGan
from models.gan.probe import probe_levels
from models.gan.training import GanTrainer, TrainerCallback

logger = logging.getLogger(__name__)


class PretrainGanConfig(GanTrainConfig):
    """The GAN run plus where it checkpoints and how its features are probed."""

    checkpoint_root: str = Field(
        "checkpoints", description="runs checkpoint into <root>/<run key>; a re-run resumes"
    )
    resume: bool = True
    probe_train_size: int = Field(10000, ge=10, description="train images the probe is fitted on")
    probe_random_inits: int = Field(3, ge=1, description="random discriminators averaged")
    probe_max_iter: int = Field(200, ge=10, description="L-BFGS iterations of each probe")


def pretrain_gan(
    data: Dataset, config: PretrainGanConfig, callbacks: Sequence[TrainerCallback] = ()
) -> TrainedGan:
    """Train the GAN on the train split, then probe its features against random ones.

    The architecture's image size and channels follow the data; in semi-supervised mode the
    discriminator gets one logit per leaf class. A checkpoint of the same run (config and data
    hash) under ``checkpoint_root`` is resumed.

    Returns:
        Both networks, with the run's facts (steps, images/s, probe accuracies) in ``info``.
    """
    if config.mode == "triple":
        raise ValueError(
            "gan.mode=triple is a game with the classifier: play it with "
            "models.triple.play_triple_game (the train pipeline's play_triple_game step)"
        )
    train_x, train_y = training_images(data)
    config = config.for_data(data.image_shape, data.hierarchy.num_leaves)
    run_key = config.run_key(data.content_hash)
    trainer = GanTrainer(
        config,
        train_x,
        Path(config.checkpoint_root) / run_key,
        data.content_hash,
        labels=train_y,
        callbacks=callbacks,
    )
    started = time.perf_counter()
    result = trainer.fit(resume=config.resume)
    train_seconds = time.perf_counter() - started
    probes = probe_levels(
        result.discriminator,
        config.architecture,
        data,
        config.probe_train_size,
        config.probe_random_inits,
        config.seed,
        max_iter=config.probe_max_iter,
    )
    labelled = result.labelled_indices
    info = {
        "mode": config.mode,
        "loss": config.loss,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "images_per_s": round(result.images_per_second, 1),
        "train_seconds": round(train_seconds, 1),
        "device": str(trainer.device),
        "run_key": run_key,
        "dataset_hash": data.content_hash,
        "labelled_images": int(len(labelled)) if labelled is not None else 0,
        "skipped_images": trainer.stream.skips.count if trainer.stream is not None else 0,
        **{k: round(v, 4) for k, v in probes.items()},
    }
    logger.info("GAN pretraining: %s", info)
    return TrainedGan.from_networks(
        result.generator, result.discriminator, info, samples_png=trainer.sample_grid()
    )


def probe_table(info: dict[str, float], levels: Sequence[str]) -> str:
    """Markdown: the linear probe's accuracy per level, trained D beside random D."""
    rows = "\n".join(
        f"| {lv} | {info[f'probe_trained_{lv}']:.4f} | {info[f'probe_random_{lv}']:.4f} |"
        for lv in levels
    )
    return "| level | trained D | random D |\n|---|---|---|\n" + rows
