"""Step: move the ``champion`` alias to the challenger when the gate said so."""

from __future__ import annotations

from typing import Annotated, Any

from zenml import log_metadata, step

from registry.promotion import apply_promotion
from steps import artifacts


@step(enable_cache=False)
def promote_champion(decision: dict[str, Any]) -> Annotated[dict[str, Any], artifacts.PROMOTION]:
    """One registry operation (the alias move) when ``decision["promote"]``; else nothing."""
    outcome = apply_promotion(decision)
    log_metadata(metadata={"promotion": outcome})
    return outcome
