"""The training entry points the pipeline steps call: one process, or a data-parallel job.

With ``distributed.world_size == 1`` these are the plain core functions. Above that, the job runs
under DDP (:mod:`models.jobs.worker`), launched here with torchrun (``launcher: torchrun``) or,
on Kubernetes (``launcher: kubernetes``), already run by the multi-pod step before this one;
either way rank 0 left its result where this process looks for it:

- the GAN: a checkpoint at the final step in the run's checkpoint folder, which
  :func:`~models.gan.pretrain.pretrain_gan` then *resumes* (so it does no training) before
  probing the features, as after any resume; the logged metrics are replayed to the callbacks;
- the classifier: its weights and history in ``<distributed.job_root>/classifier-<key>``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.classifier.config import ClassifierConfig
from models.classifier.network import HierarchicalClassifier
from models.classifier.training import EpochCallback, FitResult, fit_classifier
from models.data.sharded import Dataset, training_images
from models.gan.io import TrainedGan
from models.gan.pretrain import PretrainGanConfig, pretrain_gan
from models.gan.training import TrainerCallback
from models.jobs.spec import (
    HISTORY_FILE,
    RESULT_FILE,
    SPEC_FILE,
    JobSpec,
    classifier_job_key,
    read_history,
    read_result,
    write_data,
)
from models.runtime.device import prepare_device
from models.runtime.distributed import DistributedConfig, DistributedError
from models.runtime.launch import run_torchrun

logger = logging.getLogger(__name__)
WORKER = "models.jobs.worker"


def gan_result_dir(data: Dataset, config: PretrainGanConfig) -> Path:
    """Where a distributed GAN run leaves ``result.json``: beside its checkpoint."""
    resolved = config.for_data(data.image_shape, data.hierarchy.num_leaves)
    return Path(config.checkpoint_root) / resolved.run_key(data.content_hash) / "ddp"


def classifier_result_dir(
    data: Dataset, gan: TrainedGan, config: ClassifierConfig, dist: DistributedConfig
) -> Path:
    """Where a distributed classifier fit leaves its weights and ``result.json``."""
    key = classifier_job_key(
        config.model_dump(mode="json"), data.content_hash, str(gan.info.get("run_key", ""))
    )
    return Path(dist.job_root) / f"classifier-{key}"


def pretrain_gan_job(
    data: Dataset,
    config: PretrainGanConfig,
    dist: DistributedConfig,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainedGan:
    """:func:`~models.gan.pretrain.pretrain_gan`, on ``dist.world_size`` processes if above 1."""
    if dist.world_size == 1:
        return pretrain_gan(data, config, callbacks)
    result_dir = gan_result_dir(data, config)
    if dist.launcher == "torchrun":
        _launch(
            JobSpec(
                kind="gan",
                config=config.model_dump(mode="json"),
                distributed=dist,
                data_dir="",
                data_storage="memory",
                result_dir=str(result_dir),
            ),
            data,
        )
    result = _finished(result_dir, dist)
    for row in read_history(result_dir):
        for cb in callbacks:
            cb.on_log(int(row.pop("step")), row)
    gan = pretrain_gan(data, config.model_copy(update={"resume": True}), ())
    gan.info.update(
        images_per_s=result["images_per_s"],
        train_seconds=result["train_seconds"],
        resumed_from=result["resumed_from"],
        world_size=result["world_size"],
        skipped_images=result["skipped_count"],
    )
    return gan


def fit_classifier_job(
    config: ClassifierConfig,
    gan: TrainedGan,
    data: Dataset,
    dist: DistributedConfig,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """:func:`~models.classifier.training.fit_classifier` on the train split, watching val."""
    state = gan.discriminator_state if config.init == "gan" else None
    if dist.world_size == 1:
        train_x, train_y = training_images(data)
        return fit_classifier(
            config, gan.architecture, data.hierarchy, train_x, train_y, *data.split("val"),
            discriminator_state=state, on_epoch=on_epoch,
        )  # fmt: skip
    result_dir = classifier_result_dir(data, gan, config, dist)
    if dist.launcher == "torchrun" and read_result(result_dir) is None:
        spec = JobSpec(
            kind="classifier",
            config=config.model_dump(mode="json"),
            distributed=dist,
            data_dir="",
            data_storage="memory",
            result_dir=str(result_dir),
        )
        _launch(spec, data, gan)
    return _load_classifier(result_dir, dist, config, gan, data, on_epoch)


def _launch(spec: JobSpec, data: Dataset, gan: TrainedGan | None = None) -> None:
    """Write the job's files, clear an unfinished result, run torchrun."""
    result_dir = Path(spec.result_dir)
    for name in (RESULT_FILE, HISTORY_FILE):
        (result_dir / name).unlink(missing_ok=True)
    result_dir.mkdir(parents=True, exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix="hiergan-job-"))
    try:
        storage = write_data(data, job_dir / "data")
        gan_dir = None
        if gan is not None:
            gan.save(job_dir / "gan")
            gan_dir = str(job_dir / "gan")
        spec = spec.model_copy(
            update={"data_dir": str(job_dir / "data"), "data_storage": storage, "gan_dir": gan_dir}
        )
        (job_dir / SPEC_FILE).write_text(spec.model_dump_json(indent=1))
        run_torchrun(WORKER, [str(job_dir / SPEC_FILE)], spec.distributed)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _finished(result_dir: Path, dist: DistributedConfig) -> dict:
    """The job's ``result.json``; a clear error when the distributed run left none."""
    result = read_result(result_dir)
    if result is None:
        how = "torchrun" if dist.launcher == "torchrun" else "the multi-pod step"
        raise DistributedError(f"{how} finished but left no {RESULT_FILE} in {result_dir}")
    return result


def _load_classifier(
    result_dir: Path,
    dist: DistributedConfig,
    config: ClassifierConfig,
    gan: TrainedGan,
    data: Dataset,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> FitResult:
    """The classifier rank 0 saved, with its history replayed to ``on_epoch``."""
    from safetensors.torch import load_file

    result = _finished(result_dir, dist)
    model = HierarchicalClassifier(gan.architecture, data.hierarchy.level_sizes, config)
    model.load_state_dict(load_file(str(result_dir / "classifier.safetensors")))
    model.to(prepare_device(config.device, config.num_threads)).eval()
    for metrics in result["history"]:
        if on_epoch is not None:
            on_epoch(int(metrics["epoch"]), metrics)
    return FitResult(
        model=model,
        history=result["history"],
        labelled_indices=np.arange(result["labelled_images"]),
        images_per_second=result["images_per_s"],
        seconds=result["train_seconds"] + result["adversarial_seconds"],
        adversarial_seconds=result["adversarial_seconds"],
    )
