"""The train pipeline: ingest, validate, GAN, hierarchical classifier, calibrate, evaluate.

Run ``python -m pipelines.train_pipeline [--config pipelines/configs/train.yaml]
[--dataset NAME] [--data-dir DIR] [--no-cache]``.
"""

from __future__ import annotations

import logging
import os
import sys

import click
from pydantic import BaseModel, ConfigDict, Field
from zenml import pipeline

from models.classifier import ClassifierConfig
from models.ingest import DatasetConfig
from models.sources import SOURCES, source_fingerprint
from models.validation import ValidationConfig
from pipelines.failures import failure_reason
from pipelines.run_config import (
    ConfigError,
    load_run_config,
    validate_params,
    with_step_tracker,
    write_options,
)
from steps import (
    calibrate_classifier,
    enforce_data_validation,
    evaluate_classifier,
    fit_hierarchical_classifier,
    ingest_dataset,
    pretrain_gan,
    validate_dataset,
)
from steps.pretrain_gan import PretrainGanConfig

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "pipelines/configs/train.yaml"
# Steps that log to MLflow through the stack's experiment tracker.
TRACKED_STEPS = [
    "ingest_dataset",
    "validate_dataset",
    "pretrain_gan",
    "fit_hierarchical_classifier",
    "calibrate_classifier",
    "evaluate_classifier",
]


class TrainParams(BaseModel):
    """The ``parameters:`` section of a train config."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    gan: PretrainGanConfig = Field(default_factory=PretrainGanConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)


@pipeline(name="train_pipeline")
def train_pipeline(
    dataset: DatasetConfig,
    validation: ValidationConfig,
    gan: PretrainGanConfig,
    classifier: ClassifierConfig,
    source_fingerprint: str = "",
) -> None:
    """Ingest and validate the data, pretrain the GAN, fit, calibrate and evaluate the classifier.

    The validation gate runs before any training; the test split is read by evaluation only.
    """
    data = ingest_dataset(config=dataset, source_fingerprint=source_fingerprint)
    _, checks = validate_dataset(data, config=validation)
    enforce_data_validation(checks)
    trained_gan = pretrain_gan(data, config=gan, after="enforce_data_validation")
    model = fit_hierarchical_classifier(data, trained_gan, config=classifier)
    calibrated, _, _ = calibrate_classifier(model, data)
    evaluate_classifier(calibrated, data)


@click.command()
@click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Run config YAML (pipelines/configs/*.yaml).",
)
@click.option("--dataset", type=click.Choice(SOURCES), help="Override parameters.dataset.source.")
@click.option("--data-dir", help="Override parameters.dataset.data_dir.")
@click.option("--no-cache", is_flag=True, help="Re-run every step.")
def main(config_path: str, dataset: str | None, data_dir: str | None, no_cache: bool) -> None:
    """Run the train pipeline on the active (or the local hiergan) ZenML stack."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        params, options = load_run_config(config_path, TrainParams)
        overrides = params.model_dump()
        if dataset and dataset != params.dataset.source:
            overrides["dataset"]["source"] = dataset
            overrides["dataset"]["tree"] = None
            # the config's expected shape was written for its own dataset
            overrides["validation"]["expected_image_shape"] = None
        if data_dir:
            overrides["dataset"]["data_dir"] = data_dir
        params = validate_params(overrides, TrainParams, config_path)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    if no_cache:
        options["enable_cache"] = False

    from pipelines.stack import ensure_stack  # imports the ZenML client: after config checks

    tracker = ensure_stack()
    options = with_step_tracker(options, TRACKED_STEPS, tracker)
    options_file = write_options(options)
    try:
        run = train_pipeline.with_options(config_path=options_file)(
            dataset=params.dataset,
            validation=params.validation,
            gan=params.gan,
            classifier=params.classifier,
            source_fingerprint=source_fingerprint(params.dataset.source, params.dataset.data_dir),
        )
    except Exception as err:  # noqa: BLE001 - report the failing step's own message, then exit 1
        click.echo(f"\ntrain_pipeline failed in {failure_reason('train_pipeline', err)}", err=True)
        sys.exit(1)
    finally:
        os.unlink(options_file)
    click.echo(f"\ntrain_pipeline run {run.name!r}: {run.status}")


if __name__ == "__main__":
    main()
