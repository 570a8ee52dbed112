"""The process environment of every entry point: offline, no usage reporting.

Setting variables is all this does; it imports none of the libraries it quiets, so the core
stays importable with torch alone.
"""

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
