"""Process environment for the entry points: telemetry off, offline by default."""

from __future__ import annotations

import os
from pathlib import Path

# The folder that holds models/, steps/ and pipelines/.
REPO_ROOT = Path(__file__).resolve().parents[1]

TELEMETRY_OFF = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GE_USAGE_STATS": "FALSE",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
}


def quiet_telemetry() -> None:
    """Turn off every library's usage reporting, unless the user set the variable already."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def use_repo_source_root() -> None:
    """Make the repository root ZenML's source root.

    Without a ``.zen`` folder ZenML takes the main module's folder as the source root: for
    ``python -m pipelines.train_pipeline`` that is ``pipelines/``, and a remote orchestrator's
    pods would download that folder alone, without ``steps/`` and ``models/``.
    """
    from zenml.utils import source_utils

    source_utils.set_custom_source_root(str(REPO_ROOT))
