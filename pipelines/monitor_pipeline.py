"""The monitor pipeline: drift of a batch against the champion's training data, and what to do.

Run ``python -m pipelines.monitor_pipeline --batch PATH [--config
pipelines/configs/monitor.yaml] [--model-dir DIR | --alias champion] [--on-drift exit|retrain]``.
PATH is a folder of images, an ``.npz`` (key ``images``) or the service's request log.

Exit codes, for a scheduler or a CronJob: 0 no drift; 3 drift (``on_drift: exit``); with
``on_drift: retrain``, the train pipeline's own code; 2 a usage or config error; 1 a failure.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import BaseModel, ConfigDict, Field
from zenml import pipeline

from models.data.ingest import DatasetConfig
from models.monitoring.drift import DriftGateConfig, DriftTestConfig
from models.monitoring.features import DriftFeatureConfig
from pipelines.failures import failure_reason
from pipelines.run_config import (
    ConfigError,
    config_option,
    load_run_config,
    validate_params,
    with_step_tracker,
    write_options,
)
from steps import artifacts
from steps.monitoring import compute_drift_features, gate_drift, report_drift

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "pipelines/configs/monitor.yaml"
TRACKED_STEPS = ["compute_drift_features", "report_drift", "gate_drift"]
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DRIFT = 0, 1, 2, 3


class MonitorParams(BaseModel):
    """The ``parameters:`` section of a monitor config."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig = Field(
        default_factory=DatasetConfig, description="the model's training data (reference: val)"
    )
    features: DriftFeatureConfig = Field(default_factory=DriftFeatureConfig)
    drift: DriftTestConfig = Field(default_factory=DriftTestConfig)
    gate: DriftGateConfig = Field(default_factory=DriftGateConfig)
    model_dir: str | None = Field(None, description="a TrainedClassifier directory, else alias")
    alias: str = Field("champion", description="registry alias of the model to monitor")
    allow_reference_mismatch: bool = Field(
        False, description="warn instead of failing when the reference is not the training data"
    )
    report_dir: str = Field("reports/drift", description="where the CLI writes HTML and JSON")


@pipeline(name="monitor_pipeline", enable_cache=False)
def monitor_pipeline(
    batch_path: str,
    dataset: DatasetConfig,
    features: DriftFeatureConfig,
    drift: DriftTestConfig,
    gate: DriftGateConfig,
    model_dir: str | None = None,
    alias: str = "champion",
    allow_reference_mismatch: bool = False,
) -> None:
    """Features of the batch and the reference, an Evidently drift report, the drift gate."""
    reference, current, context, _, _ = compute_drift_features(
        batch_path=batch_path,
        dataset=dataset,
        features=features,
        model_dir=model_dir,
        alias=alias,
        allow_reference_mismatch=allow_reference_mismatch,
    )
    summary, _ = report_drift(
        reference, current, context, config=drift, max_ood_share=gate.max_ood_share
    )
    gate_drift(summary, gate=gate)


def retrain_command(gate: DriftGateConfig) -> list[str]:
    """The train pipeline's command line for ``on_drift: retrain``."""
    return [sys.executable, "-m", "pipelines.train_pipeline", "--config", gate.retrain_config]


def act_on_decision(
    decision: dict[str, Any],
    gate: DriftGateConfig,
    run: Callable[[list[str]], int] = subprocess.call,
) -> int:
    """The exit code for a decision; retrains first when drifted and ``on_drift: retrain``."""
    if not decision["drifted"]:
        return EXIT_OK
    if gate.on_drift == "retrain":
        command = retrain_command(gate)
        click.echo(f"Drift: retraining with {' '.join(command[1:])}")
        return int(run(command))
    return EXIT_DRIFT


def write_report(html: str, decision: dict[str, Any], report_dir: str, run_name: str) -> Path:
    """Write the HTML report and the decision (JSON) under ``report_dir``; return the HTML path."""
    directory = Path(report_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    html_path = directory / f"{stamp}-{run_name}.html"
    html_path.write_text(html, encoding="utf-8")
    html_path.with_suffix(".json").write_text(json.dumps(decision, indent=1, default=str))
    return html_path.resolve()


def _checked_params(
    config_path: str,
    batch_path: str,
    model_dir: str | None,
    alias: str | None,
    on_drift: str | None,
    allow_reference_mismatch: bool,
) -> tuple[MonitorParams, dict[str, Any]]:
    """The config with the command line's overrides, validated; exit 2 when it is not usable."""
    try:
        params, options = load_run_config(config_path, MonitorParams)
        overrides = params.model_dump()
        if alias:  # the registry, unless --model-dir is given too
            overrides["alias"] = alias
            overrides["model_dir"] = None
        if model_dir:
            overrides["model_dir"] = model_dir
        if on_drift:
            overrides["gate"]["on_drift"] = on_drift
        if allow_reference_mismatch:
            overrides["allow_reference_mismatch"] = True
        params = validate_params(overrides, MonitorParams, config_path)
    except ConfigError as err:
        _usage_error(str(err))
    if not Path(batch_path).exists():
        _usage_error(f"--batch {batch_path} does not exist")
    if params.model_dir and not Path(params.model_dir).is_dir():
        _usage_error(f"model directory {params.model_dir} does not exist")
    return params, options


def _usage_error(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_USAGE)


@click.command()
@click.option(
    "--batch",
    "batch_path",
    required=True,
    type=click.Path(),
    help="A folder of images, an .npz (key 'images') or the service's request-log directory.",
)
@config_option(DEFAULT_CONFIG, "Monitor config YAML.")
@click.option("--model-dir", help="Monitor this TrainedClassifier directory (not the registry).")
@click.option("--alias", help="Registry alias of the model to monitor (default: champion).")
@click.option(
    "--on-drift", type=click.Choice(["exit", "retrain"]), help="Override parameters.gate.on_drift."
)
@click.option(
    "--allow-reference-mismatch",
    is_flag=True,
    help="Warn instead of failing when the reference is not the model's training data.",
)
def main(
    batch_path: str,
    config_path: str,
    model_dir: str | None,
    alias: str | None,
    on_drift: str | None,
    allow_reference_mismatch: bool,
) -> None:
    """Score a batch against the champion's training data; exit 3 when it drifted."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params, options = _checked_params(
        config_path, batch_path, model_dir, alias, on_drift, allow_reference_mismatch
    )
    from registry.stack import ensure_stack  # imports the ZenML client: after config checks

    tracker = ensure_stack()
    options = with_step_tracker(options, TRACKED_STEPS, tracker)
    options_file = write_options(options)
    try:
        run = monitor_pipeline.with_options(config_path=options_file)(
            batch_path=str(Path(batch_path).resolve()),
            dataset=params.dataset,
            features=params.features,
            drift=params.drift,
            gate=params.gate,
            model_dir=str(Path(params.model_dir).resolve()) if params.model_dir else None,
            alias=params.alias,
            allow_reference_mismatch=params.allow_reference_mismatch,
        )
        decision = run.steps["gate_drift"].outputs[artifacts.DRIFT_DECISION][0].load()
        html = run.steps["report_drift"].outputs[artifacts.DRIFT_REPORT][0].load()
    except Exception as err:  # noqa: BLE001 - report the failing step's own message, then exit 1
        reason = failure_reason("monitor_pipeline", err)
        click.echo(f"\nmonitor_pipeline failed in {reason}", err=True)
        sys.exit(EXIT_FAILURE)
    finally:
        os.unlink(options_file)
    report = write_report(str(html), decision, params.report_dir, run.name)
    shown = {k: v for k, v in decision.items() if k != "context"}
    click.echo(f"\nmonitor_pipeline run {run.name!r}: {run.status}")
    click.echo(f"drift decision: {json.dumps(shown, default=str)}")
    click.echo(f"drift report: {report}")
    verdict = "DRIFT" if decision["drifted"] else "no drift"
    click.echo(f"{verdict}: " + ("; ".join(decision["reasons"]) or "all tests passed"))
    sys.exit(act_on_decision(decision, params.gate))


if __name__ == "__main__":
    main()
