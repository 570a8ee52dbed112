"""Gate step: may the challenger replace the champion?"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import log_metadata, step

from models.evaluation.promotion import PromotionGates
from registry.promotion import promotion_decision
from steps import artifacts, tracking

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def decide_promotion(
    scores: dict[str, Any], gates: PromotionGates
) -> Annotated[dict[str, Any], artifacts.PROMOTION_DECISION]:
    """Apply the gates; the decision carries every reason, passed or failed."""
    decision = promotion_decision(scores, gates)
    verdict = "PROMOTE" if decision["promote"] else "KEEP CHAMPION"
    logger.info("Promotion gate: %s\n  %s", verdict, "\n  ".join(decision["reasons"]))
    tracking.log_json(decision, "promotion/decision.json")
    log_metadata(metadata={"promotion_decision": decision})
    return decision
