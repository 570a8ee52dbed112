"""Step: package the calibrated classifier as a BentoML model and a bento of the service."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step

from models.classifier.io import TrainedClassifier
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def package_bento(
    classifier: TrainedClassifier, evaluation: dict[str, Any]
) -> Annotated[str, artifacts.BENTO_TAG]:
    """Save the classifier to the BentoML model store and build the service's bento.

    Returns:
        The bento's tag (``hiergan_service:<version>``), which the registered version records.
    """
    from serving.packaging import build_bento, save_bento_model

    run_name = get_step_context().pipeline_run.name
    labels = {
        "dataset_hash": str(classifier.info.get("dataset_hash", ""))[:12],
        "zenml_run": run_name,
    }
    metadata = {k: v for k, v in evaluation.items() if isinstance(v, int | float | str)}
    model_tag = save_bento_model(classifier, labels, metadata)
    bento_tag = build_bento(model_tag, labels)
    tracking.log_params({"bento_tag": bento_tag, "bento_model_tag": model_tag})
    log_metadata(metadata={"bento": {"bento_tag": bento_tag, "model_tag": model_tag}})
    return bento_tag
