"""Step: score the registry's ``challenger`` and ``champion`` on the same held-out test split."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import log_metadata, step

from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def evaluate_registered_models() -> Annotated[dict[str, Any], artifacts.PROMOTION_SCORES]:
    """Accuracy per level and ECE for both aliases, on the challenger's dataset's test split."""
    result = score_aliases()
    for role in ("challenger", "champion"):
        if scores := result[role]:
            tracking.log_metrics(
                {f"{role}_{k}": v for k, v in scores.items() if isinstance(v, float)}
            )
    log_metadata(metadata={"promotion_scores": result})
    return result


def score_aliases() -> dict[str, Any]:
    """Score ``challenger`` and ``champion`` on the challenger's dataset's test split.

    Robust accuracies come from the versions' tags (measured by each train run's robustness
    step on the same test subset). A missing champion is ``None``.
    """
    import json

    from models.ingest import DatasetConfig, build_dataset
    from models.promotion import split_scores
    from pipelines.registry import (
        CHALLENGER,
        CHAMPION,
        RegistryError,
        load_version,
        version_by_alias,
    )

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
            {k: float(v) for k, v in loaded.tags.items() if k.startswith("robust_accuracy")}
        )
        scores["version"] = loaded.version
        if loaded.tags.get("dataset_hash") != dataset.content_hash:
            scores["note"] = "trained on a different dataset than the challenger's"
        result[role] = scores
        logger.info("%s (version %s): %s", role, loaded.version, scores)
    return result
