"""Step: move the ``champion`` alias to the challenger when the gate said so."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import log_metadata, step

from steps import artifacts

logger = logging.getLogger(__name__)


def set_zenml_stage(zenml_model_version_id: str | None) -> None:
    """Mark the ZenML model version that mirrors the new champion as ``production``."""
    if not zenml_model_version_id:
        logger.info("the version has no linked ZenML model version: no stage to set")
        return
    from zenml.client import Client
    from zenml.enums import ModelStages

    from pipelines.registry import MODEL_NAME

    version = Client().get_model_version(MODEL_NAME, zenml_model_version_id)
    version.set_stage(ModelStages.PRODUCTION, force=True)
    logger.info("ZenML model %s version %s is now production", MODEL_NAME, version.name)


@step(enable_cache=False)
def promote_champion(decision: dict[str, Any]) -> Annotated[dict[str, Any], artifacts.PROMOTION]:
    """One registry operation (the alias move) when ``decision["promote"]``; else nothing."""
    outcome = apply_promotion(decision)
    log_metadata(metadata={"promotion": outcome})
    return outcome


def apply_promotion(decision: dict[str, Any]) -> dict[str, Any]:
    """Move ``champion`` to the challenger if the decision says so; the outcome, either way."""
    from mlflow import MlflowClient

    from pipelines.registry import MODEL_NAME, set_champion

    outcome = {**decision, "champion_after": decision["champion_version"]}
    if decision["promote"]:
        version = decision["challenger_version"]
        set_champion(version)
        tags = MlflowClient().get_model_version(MODEL_NAME, version).tags
        set_zenml_stage(tags.get("zenml_model_version"))
        outcome["champion_after"] = version
    return outcome
