"""Step: the promotion gate — may the challenger replace the champion?"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import log_metadata, step

from models.promotion import PromotionGates, decide
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


def promotion_decision(scores: dict[str, Any], gates: PromotionGates) -> dict[str, Any]:
    """The gate's decision on :func:`score_aliases` output, with versions and reasons."""
    challenger, champion = scores["challenger"], scores["champion"]
    same = champion is not None and champion["version"] == challenger["version"]
    if same:
        decision = {
            "promote": False,
            "reasons": [f"version {challenger['version']} is already champion"],
            "checks": [],
        }
    else:
        decision = decide(challenger, champion, gates).as_dict()
    decision.update(
        {
            "challenger_version": challenger["version"],
            "champion_version": champion["version"] if champion else None,
            "already_champion": same,
        }
    )
    return decision
