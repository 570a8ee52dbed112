"""A two-step pipeline with the train pipeline's run guard, for tests/integration/test_run_guard.py.

    python tests/guarded_pipeline.py SECONDS MARKER

The second step writes MARKER and then holds the slot for SECONDS.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from zenml import pipeline, step

from registry.run_guard import RunGuardConfig
from steps import guard_training_run


@step(enable_cache=False)
def hold(seconds: float, marker: str) -> None:
    """Say it started, then take ``seconds``."""
    Path(marker).write_text("started")
    time.sleep(seconds)


@pipeline(name="guarded_pipeline", enable_heartbeat=True, enable_cache=False)
def guarded_pipeline(seconds: float, marker: str) -> None:
    """The guard, then a step that takes a while."""
    guard_training_run(config=RunGuardConfig(stale_after_s=600))
    hold(seconds=seconds, marker=marker, after="guard_training_run")


if __name__ == "__main__":
    guarded_pipeline(float(sys.argv[1]), sys.argv[2])
