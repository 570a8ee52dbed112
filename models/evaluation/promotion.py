"""Promotion gates: may a challenger replace the champion? Pure decisions on numbers.

The registry steps feed these with metrics measured on the same test split; the decision and
every reason are returned so that they can be printed and logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PromotionGates(BaseModel):
    """Thresholds a challenger must meet (fractions, not percent)."""

    model_config = ConfigDict(extra="forbid")

    min_accuracy: float = Field(0.85, ge=0, le=1, description="absolute floor, fine level")
    max_ece: float = Field(0.02, ge=0, le=1, description="absolute ceiling, fine-level ECE")
    max_accuracy_drop: float = Field(
        0.005, ge=0, le=1, description="fine accuracy may be at most this much below champion's"
    )
    robust_metric: str = Field(
        "robust_accuracy_fine_pgd_eps0.1",
        description="version tag compared when both versions have it",
    )
    max_robust_drop: float = Field(0.0, ge=0, le=1)
    min_ood_auroc: float | None = Field(
        None,
        ge=0,
        le=1,
        description="the OOD guard's worst AUROC over the project's OOD sets (version tag "
        "ood_auroc) must reach this; None: not gated",
    )


@dataclass
class Decision:
    """The gate's verdict and why."""

    promote: bool
    reasons: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"promote": self.promote, "reasons": self.reasons, "checks": self.checks}


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"gate": name, "passed": passed, "detail": detail}


def _ood_check(challenger: dict[str, float], minimum: float) -> dict[str, Any]:
    value = challenger.get("ood_auroc")
    if value is None:
        return _check("min_ood_auroc", False, f"OOD AUROC not measured (>= {minimum:.4f} required)")
    return _check("min_ood_auroc", value >= minimum, f"OOD AUROC {value:.4f} >= {minimum:.4f}")


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    gates: PromotionGates,
) -> Decision:
    """Whether ``challenger`` may become champion.

    Args:
        challenger: its scores (``accuracy_fine``, ``ece_fine``, optionally the robust metric
            and ``ood_auroc``).
        champion: the current champion's scores on the same split, or None for a first model.
        gates: the thresholds.
    """
    checks = [
        _check(
            "min_accuracy",
            challenger["accuracy_fine"] >= gates.min_accuracy,
            f"fine accuracy {challenger['accuracy_fine']:.4f} >= {gates.min_accuracy:.4f}",
        ),
        _check(
            "max_ece",
            challenger["ece_fine"] <= gates.max_ece,
            f"fine ECE {challenger['ece_fine']:.4f} <= {gates.max_ece:.4f}",
        ),
    ]
    if gates.min_ood_auroc is not None:
        checks.append(_ood_check(challenger, gates.min_ood_auroc))
    if champion is not None:
        floor = champion["accuracy_fine"] - gates.max_accuracy_drop
        checks.append(
            _check(
                "accuracy_vs_champion",
                challenger["accuracy_fine"] >= floor,
                f"fine accuracy {challenger['accuracy_fine']:.4f} >= champion "
                f"{champion['accuracy_fine']:.4f} - {gates.max_accuracy_drop:.4f}",
            )
        )
        metric = gates.robust_metric
        if metric in challenger and metric in champion:
            floor = champion[metric] - gates.max_robust_drop
            checks.append(
                _check(
                    "robust_vs_champion",
                    challenger[metric] >= floor,
                    f"{metric} {challenger[metric]:.4f} >= champion {champion[metric]:.4f} - "
                    f"{gates.max_robust_drop:.4f}",
                )
            )
        else:
            checks.append(
                _check("robust_vs_champion", True, f"{metric} not measured on both: skipped")
            )
    promote = all(c["passed"] for c in checks)
    reasons = [("PASS " if c["passed"] else "FAIL ") + c["detail"] for c in checks]
    if champion is None:
        reasons.append("no champion yet: absolute gates only")
    return Decision(promote, reasons, checks)
