"""The study's pace under a wall-clock budget: one step scale for every arm, measured, not guessed.

How fast a step is on a shared GPU (many processes, small launch-bound networks) is not known in
advance. So with a budget, the first triple job (or, when the triple arms wait for it, the GAN
pretraining) measures its own speed over a few steps while the other jobs run beside it, and
fixes one *scale* for the whole study: every arm's steps (C's, the GAN pretraining's, the
reference's) and every warm-up are multiplied by it, so that the planned work fits the time left.
Every arm keeps the same number of C steps; the scale is written to ``<runs>/scale.json`` (with
the speed it came from) and reported. Without a budget the scale is 1.
``--scale`` fixes it in advance instead (written before any job starts; every job reads it, and a
budget then only stops what overruns): the same steps whatever the machine's load.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.gan.config import GanTrainConfig

PROBE_FROM, PROBE_TO = 20, 80  # the pace-setter times the steps between these
SAFETY = 0.8  # of the time left that the scaled plan may fill
SCALE_WAIT_S = 90.0  # how long a job waits for the pace-setter's scale before measuring itself

# Work per step relative to a triple step: top-level torch calls per step (a TorchFunctionMode
# count on CPU, every warm-up passed; a launch-bound GPU step costs about its call count), with
# the study's config (G's guide on: its teacher pass is 74 of the triple step's calls): triple
# 1448, triple-no-rp 1371, scratch-ssl 627, C alone 412, an unconditional GAN step 335.
COST = {
    "triple": 1.0,
    "triple-flat": 1.0,
    "triple-no-rp": 0.95,
    "scratch-ssl": 0.43,
    "gan-ssl": 0.43,
    "scratch": 0.28,
    "gan": 0.28,
    "gan-semi": 0.28,
    "reference": 0.28,
    "gan-step": 0.23,
}


@dataclass
class Pace:
    """What a job needs to agree on the study's scale.

    Attributes:
        runs: the study's results folder (``scale.json`` lives there).
        plan_cost: the whole study at its configured steps, in triple steps.
        longest: the longest single job, in triple steps.
        parallel: jobs running at once.
        deadline: ``time.time()`` instant training must end by; None: no budget.
    """

    runs: Path
    plan_cost: float = 1.0
    longest: float = 1.0
    parallel: int = 1
    deadline: float | None = None

    def scale(self, measure: Callable[[], float], own_cost: float, leads: bool) -> float:
        """The study's scale; measured here (``measure``: this job's steps/s) if nobody has.

        A job that ``leads`` (a triple job, or the GAN pretraining the triple jobs wait for)
        measures at once unless a scale is already there; the others wait for one, and measure
        themselves only if none appears.
        """
        path = self.runs / "scale.json"
        if self.deadline is None:  # a scale fixed in advance (--scale), else the config's steps
            return _wait_for(path, 0.0) or 1.0
        if not leads or path.exists():
            waited = _wait_for(path, SCALE_WAIT_S)
            if waited is not None:
                return waited
        rate = measure() * own_cost  # triple steps per second of one process
        left = self.deadline - time.time()
        fits = min(self.parallel * rate / self.plan_cost, rate / self.longest)
        proposal = {"scale": min(1.0, SAFETY * left * fits), "rate_triple_steps_per_s": rate}
        proposal |= {"parallel": self.parallel, "plan_cost": self.plan_cost, "seconds_left": left}
        return _claim(path, proposal)


def rescaled(config: GanTrainConfig, scale: float, minimum: int = PROBE_TO + 1) -> GanTrainConfig:
    """``config`` with its steps and every step-valued warm-up of the game times ``scale``."""
    if scale >= 1.0:
        return config
    update: dict[str, Any] = {"steps": max(minimum, round(config.steps * scale))}
    update["checkpoint_every"] = update["steps"]
    update["log_every"] = max(1, update["steps"] // 10)
    if config.triple is not None:
        fields = {
            k: round(v * scale)
            for k, v in config.triple.model_dump().items()
            if k.endswith(("_start", "_ramp", "_warmup")) and isinstance(v, int)
        }
        update["triple"] = config.triple.model_copy(update=fields)
    return config.model_copy(update=update)


def _claim(path: Path, proposal: dict[str, Any]) -> float:
    """Write ``proposal`` unless someone was first; the scale in force."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        waited = _wait_for(path, SCALE_WAIT_S)
        return float(proposal["scale"]) if waited is None else waited
    with os.fdopen(fd, "w") as fh:
        json.dump(proposal, fh)
    return float(proposal["scale"])


def _wait_for(path: Path, seconds: float) -> float | None:
    """The scale in ``path`` once it is there (and complete), or None after ``seconds``."""
    end = time.time() + seconds
    while True:
        try:
            return float(json.loads(path.read_text())["scale"])
        except (OSError, ValueError, KeyError):
            if time.time() >= end:
                return None
            time.sleep(0.25)
