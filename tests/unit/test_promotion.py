"""Promotion through a real (temporary, SQLite) MLflow registry: gates, alias moves, rollback."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from models.ingest import DatasetConfig, build_dataset
from models.promotion import Decision, PromotionGates, decide
from pipelines import registry
from steps.decide_promotion import promotion_decision
from steps.evaluate_registered_models import score_aliases
from steps.promote_champion import apply_promotion
from tests.toy_models import train_tiny_classifier

GATES = PromotionGates(min_accuracy=0.3, max_ece=0.5, max_accuracy_drop=0.0)


def test_first_model_is_judged_by_absolute_gates_only() -> None:
    ok = decide({"accuracy_fine": 0.9, "ece_fine": 0.01}, None, GATES)
    assert ok.promote and any("absolute gates only" in r for r in ok.reasons)
    bad = decide({"accuracy_fine": 0.2, "ece_fine": 0.01}, None, GATES)
    assert not bad.promote and bad.reasons[0].startswith("FAIL fine accuracy 0.2000")


def test_robust_accuracy_is_compared_only_when_both_have_it() -> None:
    gates = PromotionGates(min_accuracy=0.5, max_ece=0.5, robust_metric="robust_x")
    champion = {"accuracy_fine": 0.9, "ece_fine": 0.01, "robust_x": 0.6}
    weaker = {"accuracy_fine": 0.9, "ece_fine": 0.01, "robust_x": 0.5}
    decision: Decision = decide(weaker, champion, gates)
    assert not decision.promote
    assert [c["gate"] for c in decision.checks if not c["passed"]] == ["robust_vs_champion"]
    unmeasured = {"accuracy_fine": 0.9, "ece_fine": 0.01}
    assert decide(unmeasured, champion, gates).promote


@pytest.fixture
def tmp_registry(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("promotion", artifact_location=str(tmp_path / "art"))
    yield experiment
    mlflow.set_tracking_uri("")
    mlflow.set_registry_uri("")


def _register(classifier, dataset_config: DatasetConfig, experiment: str) -> str:
    with mlflow.start_run(experiment_id=experiment):
        mv = registry.log_classifier_version(
            classifier,
            {
                "dataset_config": dataset_config.model_dump(mode="json"),
                "dataset_hash": classifier.info["dataset_hash"],
            },
        )
    return str(mv.version)


def _promote() -> dict:
    return apply_promotion(promotion_decision(score_aliases(), GATES))


def test_promotion_refuses_worse_accepts_better_and_rollback_restores(
    tmp_registry: str, fashion_like_dir: Path
) -> None:
    config = DatasetConfig(source="fashion-mnist", data_dir=str(fashion_like_dir), seed=0)
    data = build_dataset(config)
    x, y = data.split("train")
    info = {"dataset_hash": data.content_hash}
    good = train_tiny_classifier(data.hierarchy, x, y, epochs=15, info=info)
    untrained = train_tiny_classifier(data.hierarchy, x, y, epochs=0, info=info)

    v1 = _register(good, config, tmp_registry)
    first = _promote()
    assert first["promote"] and first["champion_after"] == v1
    assert str(registry.version_by_alias(registry.CHAMPION).version) == v1

    v2 = _register(untrained, config, tmp_registry)
    refused = _promote()
    assert not refused["promote"] and refused["challenger_version"] == v2
    assert any(r.startswith("FAIL fine accuracy") for r in refused["reasons"])
    assert str(registry.version_by_alias(registry.CHAMPION).version) == v1  # untouched
    assert str(registry.version_by_alias(registry.CHALLENGER).version) == v2

    v3 = _register(good, config, tmp_registry)  # as good as the champion: passes the drop gate
    accepted = _promote()
    assert accepted["promote"] and str(registry.version_by_alias(registry.CHAMPION).version) == v3
    assert registry.champion_history() == [v1, v3]

    assert registry.rollback_champion() == (v3, v1)
    assert str(registry.version_by_alias(registry.CHAMPION).version) == v1
    loaded, tags = registry.load_classifier(registry.CHAMPION)
    assert tags["version"] == v1 and loaded.temperatures == good.temperatures
    with pytest.raises(registry.RegistryError, match="nothing to roll back to"):
        registry.rollback_champion()


def test_already_champion_is_not_promoted_again(tmp_registry: str, fashion_like_dir: Path) -> None:
    config = DatasetConfig(source="fashion-mnist", data_dir=str(fashion_like_dir), seed=0)
    data = build_dataset(config)
    x, y = data.split("train")
    model = train_tiny_classifier(data.hierarchy, x, y, epochs=15, info={"dataset_hash": "h"})
    version = _register(model, config, tmp_registry)
    assert _promote()["promote"]
    again = _promote()
    assert not again["promote"] and again["already_champion"] and again["champion_after"] == version
