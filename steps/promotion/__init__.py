"""Promotion stage: score challenger and champion, gate, move the champion alias."""

from steps.promotion.decide_promotion import decide_promotion
from steps.promotion.evaluate_registered_models import evaluate_registered_models
from steps.promotion.promote_champion import promote_champion

__all__ = [
    "evaluate_registered_models",
    "decide_promotion",
    "promote_champion",
]
