"""Process environment for the entry points: telemetry off, offline by default."""

from __future__ import annotations

import os

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
