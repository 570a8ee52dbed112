"""Promotion through a real (temporary, SQLite) MLflow registry: alias moves and rollback."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from models.data.ingest import DatasetConfig, build_dataset
from models.evaluation.promotion import PromotionGates
from registry import versions as registry
from registry.promotion import apply_promotion, promotion_decision, score_aliases
from tests.toy_models import train_tiny_classifier

# the toy models are not calibrated: the ECE gate is left open, accuracy decides here
GATES = PromotionGates(min_accuracy=0.3, max_ece=1.0, max_accuracy_drop=0.0)


@pytest.fixture
def tmp_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A SQLite MLflow store in tmp_path, for this test only.

    ``mlflow.set_*_uri`` also export ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``, which
    later subprocesses would inherit: monkeypatch puts both variables back afterwards.
    """
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(name, uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("promotion", artifact_location=str(tmp_path / "art"))
    yield experiment
    mlflow.set_tracking_uri("")
    mlflow.set_registry_uri("")


def _register(classifier, dataset_config: DatasetConfig, experiment: str) -> str:
    return _register_reused(classifier, dataset_config, experiment)[0]


def _register_reused(
    classifier, dataset_config: DatasetConfig, experiment: str
) -> tuple[str, bool]:
    with mlflow.start_run(experiment_id=experiment):
        mv, reused = registry.log_classifier_version(
            classifier,
            {
                "dataset_config": dataset_config.model_dump(mode="json"),
                "dataset_hash": classifier.info["dataset_hash"],
                "zenml_run": "test",
            },
        )
    return str(mv.version), reused


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

    # the same model again is not a new version: the registry reuses v1 (and says so)
    assert _register_reused(good, config, tmp_registry) == (v1, True)
    assert str(registry.version_by_alias(registry.CHALLENGER).version) == v1
    assert len(mlflow.MlflowClient().search_model_versions("name='hiergan'")) == 2
    better = train_tiny_classifier(data.hierarchy, x, y, epochs=16, info=info)
    v3 = _register(better, config, tmp_registry)  # as good as the champion: passes the drop gate
    accepted = _promote()
    assert accepted["promote"], accepted
    assert str(registry.version_by_alias(registry.CHAMPION).version) == v3
    assert registry.champion_history() == [v1, v3]

    assert registry.rollback_champion() == (v3, v1)
    assert str(registry.version_by_alias(registry.CHAMPION).version) == v1
    loaded, tags = registry.load_classifier(registry.CHAMPION)
    assert tags["version"] == v1 and loaded.temperatures == good.temperatures
    assert tags["reregistered_by"] == '["test"]'
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
