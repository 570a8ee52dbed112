"""MLflow logging for steps that run under the stack's experiment tracker.

When the step has no tracker (a stack without one) there is no active MLflow run and these
helpers do nothing: logging is a by-product of a step, never a reason for it to fail.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


def _active() -> bool:
    import mlflow

    if mlflow.active_run() is None:
        logger.info("no active MLflow run (no experiment tracker on this step): not logging")
        return False
    return True


def log_params(params: dict[str, Any]) -> None:
    """Log flat parameters (values stringified by MLflow)."""
    if _active():
        import mlflow

        mlflow.log_params(params)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log numeric metrics."""
    if _active():
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_json(obj: Any, artifact_file: str) -> None:
    """Log a JSON document as an artifact."""
    if _active():
        import mlflow

        mlflow.log_text(json.dumps(obj, indent=1, default=str), artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    """Log a text or HTML document as an artifact."""
    if _active():
        import mlflow

        mlflow.log_text(text, artifact_file)


def log_png(png: bytes, artifact_file: str) -> None:
    """Log PNG bytes as an image artifact."""
    if _active():
        import io

        import mlflow
        from PIL import Image

        mlflow.log_image(Image.open(io.BytesIO(png)), artifact_file=artifact_file)


def png_image(png: bytes) -> Any:
    """PNG bytes as a PIL image: ZenML stores and shows it as an image artifact."""
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")
