"""What the GAN loop reports while it runs: callbacks, the images/s meter, the progress bar."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.runtime.checkpoint import save_checkpoint


class TrainerCallback:
    """Hooks the loop calls; the pipeline step implements them to log to MLflow."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Every ``log_every`` steps: losses and images/s."""

    def on_samples(self, step: int, png: bytes) -> None:
        """Every ``sample_every`` steps and at the end: a fixed-noise sample grid."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """After each checkpoint is written."""


class Throughput:
    """Images per second over the steps since :meth:`start` (warm-up steps are not counted)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.steps: int | None = None
        self.started = time.perf_counter()

    def start(self) -> None:
        """Count from now."""
        self.steps, self.started = 0, time.perf_counter()

    def tick(self) -> None:
        """One more timed step (ignored before :meth:`start`)."""
        if self.steps is not None:
            self.steps += 1

    def images_per_second(self) -> float:
        """Timed images over the seconds since :meth:`start`."""
        elapsed = time.perf_counter() - self.started
        return (self.steps or 0) * self.batch_size / max(elapsed, 1e-9)


def progress_bar(enabled: bool, total: int, initial: int) -> Any:
    """A tqdm bar over the run's steps, or None when progress is off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="GAN", unit="step", mininterval=2.0)


def write_checkpoint(
    state: dict[str, Any], run_dir: Path, step: int, callbacks: Sequence[TrainerCallback]
) -> Path:
    """Save a loop's checkpoint (atomically) and tell its callbacks where it went."""
    path = save_checkpoint(state, run_dir)
    for cb in callbacks:
        cb.on_checkpoint(step, path)
    return path
