"""Step: score the registry's ``challenger`` and ``champion`` on the same held-out test split."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import log_metadata, step

from registry.promotion import score_aliases
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def evaluate_registered_models() -> Annotated[dict[str, Any], artifacts.PROMOTION_SCORES]:
    """Accuracy per level and ECE for both aliases, on the challenger's dataset's test split."""
    result = score_aliases()
    for role in ("challenger", "champion"):
        if scores := result[role]:
            tracking.log_metrics(
                {f"{role}_{k}": v for k, v in scores.items() if isinstance(v, float)}
            )
    log_metadata(metadata={"promotion_scores": result})
    return result
