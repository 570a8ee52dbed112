"""Gate step: stop the pipeline when robust accuracy is below the configured minimum."""

from __future__ import annotations

import logging
from typing import Any

from zenml import step

from models.robustness import RobustnessConfig, check_gate

logger = logging.getLogger(__name__)


@step
def enforce_robustness(robustness: dict[str, Any], config: RobustnessConfig) -> None:
    """Raise :class:`models.robustness.RobustnessGateError` when ``config.gate`` is not met.

    Raises:
        RobustnessGateError: the gate's accuracy is missing or below its minimum.
    """
    logger.info("Robustness gate passed: %s", check_gate(robustness, config.gate))
