"""The promote pipeline: score challenger and champion on one test split, gate, move the alias.

Run ``python -m pipelines.promote_pipeline [--config pipelines/configs/promote.yaml]`` to promote,
or ``--rollback`` to point ``champion`` back at the previous champion.
Exit codes: 0 promoted (or nothing to do), 3 the gate kept the champion, 1 failure, 2 usage.
"""

from __future__ import annotations

import logging
import os
import sys

import click
from pydantic import BaseModel, ConfigDict, Field
from zenml import pipeline

from models.evaluation.promotion import PromotionGates
from pipelines.failures import failure_reason
from pipelines.run_config import (
    ConfigError,
    config_option,
    load_run_config,
    with_step_tracker,
    write_options,
)
from steps.promotion import decide_promotion, evaluate_registered_models, promote_champion

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "pipelines/configs/promote.yaml"
TRACKED_STEPS = ["evaluate_registered_models", "decide_promotion", "promote_champion"]
EXIT_KEPT = 3


class PromoteParams(BaseModel):
    """The ``parameters:`` section of a promote config."""

    model_config = ConfigDict(extra="forbid")

    gates: PromotionGates = Field(default_factory=PromotionGates)


@pipeline(name="promote_pipeline", enable_cache=False)
def promote_pipeline(gates: PromotionGates) -> None:
    """Evaluate ``challenger`` and ``champion`` on the same test split; promote if gates pass."""
    scores = evaluate_registered_models()
    decision = decide_promotion(scores, gates=gates)
    promote_champion(decision)


def rollback() -> None:
    """Point ``champion`` at the previous champion and mark it production in ZenML."""
    from mlflow import MlflowClient

    from registry.promotion import set_zenml_stage
    from registry.stack import use_stack_tracking_uri
    from registry.versions import MODEL_NAME, rollback_champion

    use_stack_tracking_uri()
    old, new = rollback_champion()
    set_zenml_stage(
        MlflowClient().get_model_version(MODEL_NAME, new).tags.get("zenml_model_version")
    )
    click.echo(f"champion rolled back: version {old} -> version {new}")


@click.command()
@config_option(DEFAULT_CONFIG, "Promote config YAML (the gates).")
@click.option("--rollback", "do_rollback", is_flag=True, help="Restore the previous champion.")
def main(config_path: str, do_rollback: bool) -> None:
    """Promote the registry's challenger to champion when it passes the gates."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from registry.versions import RegistryError

    if do_rollback:
        try:
            rollback()
        except RegistryError as err:
            raise click.ClickException(str(err)) from None
        return
    try:
        params, options = load_run_config(config_path, PromoteParams)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None

    from registry.stack import ensure_stack

    options = with_step_tracker(options, TRACKED_STEPS, ensure_stack())
    options_file = write_options(options)
    try:
        run = promote_pipeline.with_options(config_path=options_file)(gates=params.gates)
    except Exception as err:  # noqa: BLE001 - report the failing step's own message, then exit 1
        click.echo(
            f"\npromote_pipeline failed in {failure_reason('promote_pipeline', err)}", err=True
        )
        sys.exit(1)
    finally:
        os.unlink(options_file)
    decision = run.steps["promote_champion"].outputs["promotion"][0].load()
    verdict = "PROMOTED" if decision["promote"] else "KEPT the champion"
    click.echo(
        f"\npromote_pipeline: {verdict} — challenger version {decision['challenger_version']}, "
        f"champion now version {decision['champion_after']}"
    )
    for reason in decision["reasons"]:
        click.echo(f"  {reason}")
    if not decision["promote"] and not decision["already_champion"]:
        sys.exit(EXIT_KEPT)


if __name__ == "__main__":
    main()
