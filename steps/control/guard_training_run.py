"""Step: claim the train pipeline's one-run-at-a-time slot in the ZenML server."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step

from registry.run_guard import RunGuardConfig, claim_run_slot
from steps import artifacts

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def guard_training_run(config: RunGuardConfig) -> Annotated[dict[str, Any], artifacts.RUN_GUARD]:
    """Stop this run if an older run of the pipeline is alive; mark dead 'running' runs failed.

    Raises:
        RunGuardError: naming the run that still holds the slot.
    """
    if not config.enabled:
        return {"enabled": False}
    decision = claim_run_slot(get_step_context().pipeline_run.id, config.stale_after_s)
    for marked in decision["marked_failed"]:
        logger.warning("Marked run %s failed: %s", marked["run"], marked["why"])
    log_metadata(metadata={"run_guard": decision})
    return decision
