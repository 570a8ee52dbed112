"""Step: register the calibrated classifier in MLflow as a ``hiergan`` version (``challenger``)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step

from models.classifier_io import TrainedClassifier
from models.ingest import DatasetConfig
from steps import artifacts

logger = logging.getLogger(__name__)


def version_tags(
    classifier: TrainedClassifier,
    evaluation: dict[str, Any],
    robustness: dict[str, Any] | None,
    dataset: DatasetConfig,
) -> dict[str, Any]:
    """What a registered version says about itself: test metrics, data, config, robustness."""
    tree = classifier.tree
    tags: dict[str, Any] = {
        f"test_accuracy_{level}": evaluation[f"global_accuracy_{level}"]
        for level in tree.level_names
    }
    tags["test_accuracy_fine"] = evaluation[f"global_accuracy_{tree.level_names[-1]}"]
    tags["test_ece_fine"] = evaluation["ece_fine_after"]
    tags["test_images"] = evaluation["test_images"]
    tags["dataset_hash"] = evaluation.get("dataset_hash") or classifier.info.get("dataset_hash")
    tags["dataset_config"] = dataset.model_dump(mode="json")
    tags["classifier_config"] = classifier.config.model_dump(mode="json")
    tags["temperatures"] = classifier.temperatures
    for key, value in (robustness or {}).items():
        if key.startswith("robust_accuracy") and isinstance(value, int | float):
            tags[key] = value
    return tags


@step(enable_cache=False)
def register_model(
    classifier: TrainedClassifier,
    evaluation: dict[str, Any],
    bento_tag: str,
    dataset_config: DatasetConfig,
    robustness: dict[str, Any] | None = None,
) -> Annotated[dict[str, Any], artifacts.REGISTERED_MODEL]:
    """Log the classifier to MLflow, register it, tag it, alias it ``challenger``.

    The ZenML model version of this run and the MLflow version point at each other: the MLflow
    version has ``zenml_model_version`` and the ZenML model version has the MLflow name/version.
    """
    import mlflow

    from pipelines.registry import MODEL_NAME, git_commit, log_classifier_version

    context = get_step_context()
    tags = version_tags(classifier, evaluation, robustness, dataset_config)
    tags.update(
        {
            "bento_tag": bento_tag,
            "git_commit": git_commit(),
            "zenml_run": context.pipeline_run.name,
        }
    )
    # a pipeline without a ZenML model: the MLflow version stands alone
    zenml_model = context.model if context.model_version else None
    if zenml_model is not None:
        tags["zenml_model_version"] = str(zenml_model.id)
        tags["zenml_model_version_name"] = str(zenml_model.version)
    started = mlflow.active_run() is None
    if started:  # a stack without an experiment tracker: register into the default store anyway
        mlflow.start_run(run_name=f"register-{context.pipeline_run.name}")
    try:
        mv = log_classifier_version(classifier, tags)
    finally:
        if started:
            mlflow.end_run()
    record = {
        "name": MODEL_NAME,
        "version": str(mv.version),
        "aliases": list(mv.aliases),
        "source": mv.source,
        "run_id": mv.run_id,
        "bento_tag": bento_tag,
        "test_accuracy_fine": tags["test_accuracy_fine"],
        "test_ece_fine": tags["test_ece_fine"],
    }
    logger.info(
        "Registered %s version %s (challenger), bento %s", MODEL_NAME, mv.version, bento_tag
    )
    log_metadata(metadata={"mlflow_model": record}, infer_model=zenml_model is not None)
    return record
