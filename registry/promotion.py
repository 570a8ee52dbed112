"""Promotion through the registry: score both aliases on one test split, decide, move the alias.

The gate itself is a pure decision on numbers (:func:`models.evaluation.decide`); this module
feeds it from the registry and applies its verdict (one alias update, and the mirroring ZenML
model version marked ``production``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mlflow import MlflowClient

from models.data.ingest import DatasetConfig, build_dataset
from models.evaluation.promotion import PromotionGates, decide
from models.evaluation.report import split_scores
from registry.versions import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAME,
    RegistryError,
    load_version,
    set_champion,
    version_by_alias,
)

logger = logging.getLogger(__name__)


def score_aliases() -> dict[str, Any]:
    """Score ``challenger`` and ``champion`` on the challenger's dataset's test split.

    Robust accuracies come from the versions' tags (measured by each train run's robustness
    step on the same test subset). A missing champion is ``None``.

    Raises:
        RegistryError: there is no ``challenger``.
    """
    challenger_mv = version_by_alias(CHALLENGER)
    if challenger_mv is None:
        raise RegistryError("no 'challenger' version to evaluate: run the train pipeline first")
    champion_mv = version_by_alias(CHAMPION)
    dataset_config = DatasetConfig(**json.loads(challenger_mv.tags["dataset_config"]))
    dataset = build_dataset(dataset_config)
    images, labels = dataset.split("test")
    result: dict[str, Any] = {"dataset_hash": dataset.content_hash, "test_images": len(labels)}
    for role, mv in (("challenger", challenger_mv), ("champion", champion_mv)):
        if mv is None:
            result[role] = None
            continue
        loaded = load_version(str(mv.version))
        scores: dict[str, Any] = split_scores(loaded.classifier, images, labels)
        scores.update(
            {
                k: float(v)
                for k, v in loaded.tags.items()
                if k.startswith("robust_accuracy") or k == "ood_auroc"
            }
        )
        scores["version"] = loaded.version
        if loaded.tags.get("dataset_hash") != dataset.content_hash:
            scores["note"] = "trained on a different dataset than the challenger's"
        result[role] = scores
        logger.info("%s (version %s): %s", role, loaded.version, scores)
    return result


def promotion_decision(scores: dict[str, Any], gates: PromotionGates) -> dict[str, Any]:
    """The gate's decision on :func:`score_aliases` output, with versions and reasons."""
    challenger, champion = scores["challenger"], scores["champion"]
    same = champion is not None and champion["version"] == challenger["version"]
    if same:
        decision = {
            "promote": False,
            "reasons": [f"version {challenger['version']} is already champion"],
            "checks": [],
        }
    else:
        decision = decide(challenger, champion, gates).as_dict()
    decision.update(
        {
            "challenger_version": challenger["version"],
            "champion_version": champion["version"] if champion else None,
            "already_champion": same,
        }
    )
    return decision


def apply_promotion(decision: dict[str, Any]) -> dict[str, Any]:
    """Move ``champion`` to the challenger if the decision says so; the outcome, either way."""
    outcome = {**decision, "champion_after": decision["champion_version"]}
    if decision["promote"]:
        version = decision["challenger_version"]
        set_champion(version)
        tags = MlflowClient().get_model_version(MODEL_NAME, version).tags
        set_zenml_stage(tags.get("zenml_model_version"))
        outcome["champion_after"] = version
    return outcome


def set_zenml_stage(zenml_model_version_id: str | None) -> None:
    """Mark the ZenML model version that mirrors the new champion as ``production``."""
    if not zenml_model_version_id:
        logger.info("the version has no linked ZenML model version: no stage to set")
        return
    from zenml.client import Client
    from zenml.enums import ModelStages

    version = Client().get_model_version(MODEL_NAME, zenml_model_version_id)
    version.set_stage(ModelStages.PRODUCTION, force=True)
    logger.info("ZenML model %s version %s is now production", MODEL_NAME, version.name)
