"""The train pipeline: ingest, validate, GAN, classifier, calibrate, evaluate, package, register.

Run ``python -m pipelines.train_pipeline [--config pipelines/configs/train.yaml]
[--dataset NAME] [--data-dir DIR] [--no-cache] [--schedule CRON]``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click
from pydantic import BaseModel, ConfigDict, Field, model_validator
from zenml import Model, pipeline

from models.calibration.config import CalibrationConfig
from models.classifier.config import ClassifierConfig
from models.data.ingest import DatasetConfig
from models.data.sources import SOURCES, source_fingerprint
from models.gan.pretrain import PretrainGanConfig
from models.ood.config import OodConfig
from models.robustness.config import RobustnessConfig
from models.runtime.distributed import DistributedConfig
from models.validation.checks import ValidationConfig
from pipelines.environment import use_repo_source_root
from pipelines.failures import failure_reason
from pipelines.run_config import (
    ConfigError,
    config_option,
    load_run_config,
    validate_params,
    with_step_tracker,
    write_options,
)
from pipelines.schedule import cron_schedule
from registry.run_guard import RunGuardConfig
from steps import (
    calibrate_classifier,
    enforce_data_validation,
    enforce_robustness,
    evaluate_classifier,
    evaluate_ood,
    evaluate_robustness,
    fit_hierarchical_classifier,
    fit_ood_guard,
    guard_training_run,
    ingest_dataset,
    package_bento,
    play_triple_game,
    pretrain_gan,
    register_model,
    validate_dataset,
)
from steps.training.distributed_command import pod_step

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "pipelines/configs/train.yaml"
# The ZenML model whose versions mirror the MLflow registered model's (same name).
MODEL_NAME = "hiergan"
MODEL_DESCRIPTION = "GAN-pretrained hierarchical image classifier (one head per tree level)."
# Steps that log to MLflow through the stack's experiment tracker.
TRACKED_STEPS = [
    "ingest_dataset",
    "validate_dataset",
    "pretrain_gan",
    "pretrain_trunk_gan",
    "play_triple_game",
    "fit_hierarchical_classifier",
    "calibrate_classifier",
    "fit_ood_guard",
    "evaluate_classifier",
    "evaluate_ood",
    "evaluate_robustness",
    "package_bento",
    "register_model",
]


class TrainParams(BaseModel):
    """The ``parameters:`` section of a train config."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    gan: PretrainGanConfig = Field(default_factory=PretrainGanConfig)
    trunk_gan: PretrainGanConfig | None = Field(
        None,
        description="gan.mode=triple with classifier.init=gan: the unsupervised GAN pretrained "
        "first, whose discriminator starts the game's classifier C",
    )
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    ood: OodConfig = Field(default_factory=OodConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    run_guard: RunGuardConfig = Field(default_factory=RunGuardConfig)

    @model_validator(mode="after")
    def _triple_mode_trains_the_classifier_itself(self) -> TrainParams:
        if self.gan.mode == "triple" and self.classifier.adversarial is not None:
            raise ValueError(
                "classifier.adversarial: PGD fine-tuning is not part of gan.mode=triple (the "
                "game trains the classifier); remove it or use another gan.mode"
            )
        if self.gan.mode == "triple" and self.dataset.storage != "memory":
            raise ValueError(
                "dataset.storage: gan.mode=triple plays its game on an in-memory dataset; "
                "use storage: memory or another gan.mode"
            )
        if self.gan.mode == "triple" and self.distributed.world_size > 1:
            raise ValueError(
                "distributed.world_size: gan.mode=triple runs in one process; set it to 1 "
                "or use another gan.mode"
            )
        return self

    @model_validator(mode="after")
    def _trunk_gan_starts_the_game_classifier(self) -> TrainParams:
        triple, from_gan = self.gan.mode == "triple", self.classifier.init == "gan"
        if self.trunk_gan is None:
            if triple and from_gan:
                raise ValueError(
                    "trunk_gan: classifier.init=gan with gan.mode=triple starts C from a "
                    "pretrained GAN's discriminator; add a trunk_gan section (the GAN to "
                    "pretrain, e.g. mode: unsupervised) or set classifier.init: scratch"
                )
            return self
        if not (triple and from_gan):
            raise ValueError(
                "trunk_gan: only read with gan.mode=triple and classifier.init=gan (other "
                "modes pretrain the gan section itself); remove it"
            )
        if self.trunk_gan.mode == "triple":
            raise ValueError("trunk_gan.mode: the trunk's GAN cannot itself be a triple game")
        ours, theirs = self.gan.architecture, self.trunk_gan.architecture
        if theirs.spectral_norm:
            raise ValueError(
                "trunk_gan.architecture.spectral_norm: C's trunk has batch norm where a "
                "spectrally normalised D has none, so its weights would not fit; set it false"
            )
        for key in ("d_width", "d_extra_layers"):
            if getattr(ours, key) != getattr(theirs, key):
                raise ValueError(
                    f"trunk_gan.architecture.{key}: {getattr(theirs, key)} does not fit C, whose "
                    f"trunk has gan.architecture.{key} = {getattr(ours, key)}"
                )
        return self


# Heartbeats: every running step reports to the ZenML server, so the run guard can tell a live
# run from one that was killed and stayed `running`.
@pipeline(
    name="train_pipeline",
    model=Model(name=MODEL_NAME, description=MODEL_DESCRIPTION),
    enable_heartbeat=True,
)
def train_pipeline(
    dataset: DatasetConfig,
    validation: ValidationConfig,
    gan: PretrainGanConfig,
    classifier: ClassifierConfig,
    robustness: RobustnessConfig,
    trunk_gan: PretrainGanConfig | None = None,
    calibration: CalibrationConfig | None = None,
    ood: OodConfig | None = None,
    distributed: DistributedConfig | None = None,
    run_guard: RunGuardConfig | None = None,
    source_fingerprint: str = "",
) -> None:
    """From raw images to a registered ``challenger``: data, GAN, classifier, checks, bento.

    Ingest and validate the data, pretrain the GAN, fit, calibrate and evaluate the classifier
    (with ``gan.mode: triple``, the Triple-GAN game's classifier C instead, its trunk from
    ``trunk_gan``'s discriminator when ``classifier.init`` is gan), measure its
    robustness, then package it as a bento and register it. The validation gate
    runs before any training; the test split is read by evaluation only; a model that fails
    the robustness gate is neither packaged nor registered. The run first claims the pipeline's
    one-run-at-a-time slot; with ``distributed.launcher: kubernetes`` a multi-pod step trains
    before each training step, which then reads its result.
    """
    distributed = distributed or DistributedConfig()
    guard_training_run(config=run_guard or RunGuardConfig())
    data = ingest_dataset(
        config=dataset, source_fingerprint=source_fingerprint, after="guard_training_run"
    )
    _, checks = validate_dataset(data, config=validation)
    enforce_data_validation(checks)
    pods = distributed.world_size > 1 and distributed.launcher == "kubernetes"
    if gan.mode == "triple":
        trained_gan, model = _play_triple_game(data, gan, trunk_gan, classifier)
    else:
        if pods:
            pod_step("gan")(after="enforce_data_validation")
        trained_gan = pretrain_gan(
            data,
            config=gan,
            distributed=distributed,
            after="pretrain_gan_pods" if pods else "enforce_data_validation",
        )
        if pods:
            pod_step("classifier")(after="pretrain_gan")
        model = fit_hierarchical_classifier(
            data,
            trained_gan,
            config=classifier,
            distributed=distributed,
            after="fit_classifier_pods" if pods else None,
        )
    calibrated, _, _ = calibrate_classifier(model, data, config=calibration or CalibrationConfig())
    # the guard travels inside the classifier artifact from here on (docs/architecture.md)
    calibrated, _, _ = fit_ood_guard(calibrated, trained_gan, data, config=ood or OodConfig())
    if gan.mode == "triple":  # the report shows what G believes each tree node looks like
        evaluation, _, _ = evaluate_classifier(calibrated, data, gan=trained_gan)
    else:
        evaluation, _, _ = evaluate_classifier(calibrated, data)
    ood_scores, _ = evaluate_ood(calibrated, data)
    robustness_scores, _, _ = evaluate_robustness(calibrated, data, config=robustness)
    enforce_robustness(robustness_scores, config=robustness)
    # only a model that passed the robustness gate is packaged and registered
    bento_tag = package_bento(calibrated, evaluation, after="enforce_robustness")
    register_model(
        calibrated,
        evaluation,
        bento_tag,
        dataset_config=dataset,
        robustness=robustness_scores,
        ood=ood_scores,
    )


def _play_triple_game(
    data: Any,
    gan: PretrainGanConfig,
    trunk_gan: PretrainGanConfig | None,
    classifier: ClassifierConfig,
) -> tuple[Any, Any]:
    """The Triple-GAN steps: the game's label generator C is the classifier that goes on.

    With ``classifier.init: gan`` the ``trunk_gan`` GAN is pretrained first (step id
    ``pretrain_trunk_gan``) and C starts from its discriminator. ``data`` and the returned G
    and D, and C, are the steps' outputs as the pipeline sees them while it is composed.
    """
    trunk = None
    if trunk_gan is not None:
        trunk = pretrain_gan(
            data,
            config=trunk_gan,
            prefix="trunk_gan",
            id="pretrain_trunk_gan",
            after="enforce_data_validation",
        )
    trained_gan, model, _ = play_triple_game(
        data, trunk, config=gan, classifier=classifier, after="enforce_data_validation"
    )
    return trained_gan, model


@click.command()
@config_option(DEFAULT_CONFIG, "Run config YAML (pipelines/configs/*.yaml).")
@click.option("--dataset", type=click.Choice(SOURCES), help="Override parameters.dataset.source.")
@click.option("--data-dir", help="Override parameters.dataset.data_dir.")
@click.option("--no-cache", is_flag=True, help="Re-run every step.")
@click.option(
    "--schedule",
    "cron",
    metavar="CRON",
    help='Submit a cron schedule instead of one run, e.g. "0 3 * * 0" (Sundays 03:00); '
    "needs a stack whose orchestrator schedules (Kubernetes: a CronJob).",
)
def main(
    config_path: str, dataset: str | None, data_dir: str | None, no_cache: bool, cron: str | None
) -> None:
    """Run the train pipeline on the active (or the local hiergan) ZenML stack."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        schedule = cron_schedule(cron) if cron else None
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

    from registry.stack import ensure_stack  # imports the ZenML client: after config checks

    use_repo_source_root()
    tracker = ensure_stack()
    options = with_step_tracker(options, TRACKED_STEPS, tracker)
    options_file = write_options(options)
    try:
        run = train_pipeline.with_options(config_path=options_file, schedule=schedule)(
            dataset=params.dataset,
            validation=params.validation,
            gan=params.gan,
            trunk_gan=params.trunk_gan,
            classifier=params.classifier,
            robustness=params.robustness,
            calibration=params.calibration,
            ood=params.ood,
            distributed=params.distributed,
            run_guard=params.run_guard,
            source_fingerprint=source_fingerprint(params.dataset.source, params.dataset.data_dir),
        )
    except Exception as err:  # noqa: BLE001 - report the failing step's own message, then exit 1
        click.echo(f"\ntrain_pipeline failed in {failure_reason('train_pipeline', err)}", err=True)
        sys.exit(1)
    finally:
        os.unlink(options_file)
    if schedule is not None:
        click.echo(f"\ntrain_pipeline scheduled with cron {schedule.cron_expression!r}")
    elif run is not None:
        click.echo(f"\ntrain_pipeline run {run.name!r}: {run.status}")


if __name__ == "__main__":
    main()
