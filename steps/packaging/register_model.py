"""Step: register the calibrated classifier in MLflow as a ``hiergan`` version (``challenger``)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step

from models.classifier.io import TrainedClassifier
from models.data.ingest import DatasetConfig
from registry.versions import MODEL_NAME, git_commit, log_classifier_version, version_tags
from steps import artifacts

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def register_model(
    classifier: TrainedClassifier,
    evaluation: dict[str, Any],
    bento_tag: str,
    dataset_config: DatasetConfig,
    robustness: dict[str, Any] | None = None,
    ood: dict[str, Any] | None = None,
) -> Annotated[dict[str, Any], artifacts.REGISTERED_MODEL]:
    """Log the classifier to MLflow, register it, tag it, alias it ``challenger``.

    The ZenML model version of this run and the MLflow version point at each other: the MLflow
    version has ``zenml_model_version`` and the ZenML model version has the MLflow name/version.
    """
    import mlflow

    context = get_step_context()
    tags = version_tags(classifier, evaluation, robustness, dataset_config, ood)
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
        mv, reused = log_classifier_version(classifier, tags)
        if tags.get("ood_auroc") is not None:  # the version's run carries it as a metric too
            mlflow.log_metric("ood_auroc", float(tags["ood_auroc"]))
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
        "ood_auroc": tags.get("ood_auroc"),
        "model_hash": mv.tags.get("model_hash", ""),
        "reused_existing_version": reused,
    }
    logger.info(
        "%s %s version %s (challenger), bento %s",
        "Reused already registered" if reused else "Registered",
        MODEL_NAME,
        mv.version,
        bento_tag,
    )
    log_metadata(metadata={"mlflow_model": record}, infer_model=zenml_model is not None)
    return record
