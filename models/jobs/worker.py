"""One rank of a data-parallel job: ``python -m models.jobs.worker JOB_DIR/job.json``.

Started by torchrun (:mod:`models.runtime.launch`), once per process. It joins the process group
(with the configured timeout), builds the same trainer a single process would, trains, and on
rank 0 writes the result: for the GAN, checkpoints in its run folder plus ``result.json`` and
the logged metrics (``history.jsonl``); for the classifier, its weights and history.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from models.classifier.config import ClassifierConfig
from models.classifier.training import fit_classifier
from models.data.sharded import Dataset, training_images
from models.gan.io import TrainedGan
from models.gan.pretrain import PretrainGanConfig
from models.gan.training import GanTrainer, TrainerCallback
from models.jobs.spec import HISTORY_FILE, JobSpec, read_data, write_result
from models.runtime import distributed

logger = logging.getLogger("models.jobs.worker")


class _History(TrainerCallback):
    """Rank 0's logged metrics, one JSON line per log step (the step replays them to MLflow)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / HISTORY_FILE

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Append ``{"step": step, **metrics}``."""
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")


def run_gan(spec: JobSpec, data: Dataset, dist: distributed.Dist) -> dict[str, Any]:
    """Train the GAN to its configured steps (resuming its checkpoint); the run's facts."""
    config = PretrainGanConfig.model_validate(spec.config)
    config = config.for_data(data.image_shape, data.hierarchy.num_leaves)
    run_dir = Path(config.checkpoint_root) / config.run_key(data.content_hash)
    train_x, train_y = training_images(data)
    callbacks = [_History(Path(spec.result_dir))] if dist.is_main else []
    trainer = GanTrainer(config, train_x, run_dir, data.content_hash, train_y, callbacks=callbacks)
    started = time.perf_counter()
    result = trainer.fit(resume=config.resume)
    skips = trainer.stream.skips if trainer.stream is not None else None
    parts = dist.gather_json({"count": skips.count, "names": skips.names} if skips else {})
    return {
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "images_per_s": round(result.images_per_second, 1),
        "train_seconds": round(time.perf_counter() - started, 1),
        "skipped_count": sum(p.get("count", 0) for p in parts),
        "skipped": [s for p in parts for s in p.get("names", [])],
    }


def run_classifier(spec: JobSpec, data: Dataset, dist: distributed.Dist) -> dict[str, Any]:
    """Fit the classifier; rank 0 saves its weights next to the result."""
    from safetensors.torch import save_file

    config = ClassifierConfig.model_validate(spec.config)
    if spec.gan_dir is None:
        raise ValueError("a classifier job needs gan_dir (the GAN's architecture and trunk)")
    gan = TrainedGan.load(spec.gan_dir)
    train_x, train_y = training_images(data)
    val_x, val_y = data.split("val") if dist.is_main else (None, None)
    result = fit_classifier(
        config,
        gan.architecture,
        data.hierarchy,
        train_x,
        train_y,
        val_x,
        val_y,
        discriminator_state=gan.discriminator_state if config.init == "gan" else None,
    )
    if dist.is_main:
        state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
        save_file(state, str(Path(spec.result_dir) / "classifier.safetensors"))
    return {
        "history": result.history,
        "labelled_images": int(len(result.labelled_indices)),
        "images_per_s": round(result.images_per_second, 1),
        "train_seconds": round(result.seconds, 1),
        "adversarial_seconds": round(result.adversarial_seconds, 1),
    }


@record  # a failing rank's traceback goes into torchrun's error summary
def main(argv: list[str] | None = None) -> int:
    """Run the job at ``argv[0]`` as this rank."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    spec = JobSpec.model_validate_json(Path(args[0]).read_text())
    dist = distributed.init_process(spec.distributed)
    try:
        data = read_data(spec)
        run = run_gan if spec.kind == "gan" else run_classifier
        result = run(spec, data, dist)
        dist.barrier()
        if dist.is_main:
            write_result(spec.result_dir, result | {"world_size": dist.world_size})
            facts = {k: v for k, v in result.items() if k != "history"}
            logger.info("rank 0: %s job done: %s", spec.kind, facts)
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    torch.set_num_interop_threads(1)
    code = main()
    # Leave without running C++ static destructors: a rank whose work is done and whose process
    # group is destroyed could still abort at interpreter exit ("terminate called without an
    # active exception", seen on 2 busy cores), and torchrun would then fail the whole job.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
