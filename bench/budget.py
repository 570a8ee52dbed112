"""Sizing a profile's run to a wall-clock budget from a few timed steps (torch alone).

Used by the benchmarks that run a whole profile inside a lent GPU machine's minutes
(``bench/gpu_quality.py``, ``bench/robustness.py --budget-s``): they time a few GAN steps and
classifier steps on the machine itself, then cut the configured steps and epochs (never raise
them) so that the measured speeds fit the budget.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import torch

from models.classifier.config import ClassifierConfig
from models.classifier.training import fit_classifier
from models.gan.config import GanTrainConfig
from models.gan.training import GanTrainer


def sync(device: str) -> None:
    """Wait for queued GPU work (timings are wall-clock)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gan_step_seconds(data: Any, gan: GanTrainConfig, probe_steps: int) -> float:
    """Seconds per GAN step: the difference of a ``2 * probe_steps`` and a ``probe_steps`` run."""
    x, _ = data.split("train")
    cfg = gan.for_data(data.image_shape, data.hierarchy.num_leaves)
    with tempfile.TemporaryDirectory() as tmp:
        times = []
        # the first run pays the one-time costs (kernels, allocations) and is not used
        for run, steps in enumerate((probe_steps, probe_steps, 2 * probe_steps)):
            probe = cfg.model_copy(update={"steps": steps, "checkpoint_every": 10**9})
            trainer = GanTrainer(probe, x, f"{tmp}/{run}", "probe")
            sync(gan.device)
            t0 = time.perf_counter()
            trainer.fit(resume=False)
            sync(gan.device)
            times.append(time.perf_counter() - t0)
    return max(1e-6, (times[2] - times[1]) / probe_steps)


def classifier_step_seconds(
    data: Any, gan: GanTrainConfig, cfg: ClassifierConfig, steps: int
) -> float:
    """Seconds per step of the classifier's main phase (scratch trunk, same network and batch).

    An adversarial ``from_start`` section stays on, so the probe pays its attack; the epochs
    that section would append are left out (they are sized apart, if at all).
    """
    x, y = data.split("train")
    arch = gan.for_data(data.image_shape, data.hierarchy.num_leaves).architecture
    n = min(len(x), steps * cfg.batch_size)
    update: dict[str, Any] = {"init": "scratch", "epochs": 1, "freeze_epochs": 0}
    if cfg.adversarial is not None:
        update["adversarial"] = cfg.adversarial.model_copy(update={"epochs": 0})
    probe = cfg.model_copy(update=update)
    # a first short run pays the one-time costs (kernels, the attack's set-up) outside the timing
    fit_classifier(probe, arch, data.hierarchy, x[: 2 * cfg.batch_size], y[: 2 * cfg.batch_size])
    times = []
    for size in (n // 2, n):
        sync(cfg.device)
        t0 = time.perf_counter()
        fit_classifier(probe, arch, data.hierarchy, x[:size], y[:size])
        sync(cfg.device)
        times.append(time.perf_counter() - t0)
    return max(1e-6, (times[1] - times[0]) / max(1, (n - n // 2) // cfg.batch_size))


def fit_epochs(seconds: float, step_seconds: float, steps_per_epoch: int, configured: int) -> int:
    """Epochs of ``step_seconds`` steps that fit ``seconds``: at least 2, at most ``configured``."""
    return max(2, min(configured, math.floor(seconds / (step_seconds * steps_per_epoch))))
