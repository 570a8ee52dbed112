"""What robustness evaluation measures, the names of its results, and the gate on them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.attacks.corruptions import CORRUPTIONS, check_corruptions
from models.attacks.evasion import ATTACKS
from models.tree.hierarchy import Hierarchy

FINE = "fine"


class RobustnessGateError(RuntimeError):
    """Robust accuracy is below the configured minimum; the message says which and by how much."""


class RobustnessGate(BaseModel):
    """The bound the pipeline enforces: accuracy of one level under one attack at one eps."""

    model_config = ConfigDict(extra="forbid")

    min_accuracy: float = Field(0.0, ge=0, le=1, description="fail below this robust accuracy")
    attack: Literal["fgsm", "pgd", "autoattack"] = "pgd"
    eps: float = Field(0.1, gt=0, le=1)
    level: str = Field(FINE, description="'fine' (the leaf) or a coarser level's name")
    loss: Literal["leaf", "level"] = Field(
        "leaf",
        description="for a coarse level: read it under the attack on the leaf's loss (leaf) or "
        "on the level's own (level; stronger: the default model's category at PGD eps 0.05 "
        "88.4 vs 59.9 %, bench/results/level_attack.md). Both are measured and reported",
    )

    @property
    def metric(self) -> str:
        """The flat result key the gate reads."""
        if self.loss == "level" and self.level != FINE:
            return own_loss_key(self.level, self.attack, self.eps)
        return robust_key(self.level, self.attack, self.eps)


class RobustnessConfig(BaseModel):
    """How robustness is measured (``robustness:`` in the train YAML)."""

    model_config = ConfigDict(extra="forbid")

    attacks: list[Literal["fgsm", "pgd"]] = Field(default_factory=lambda: list(ATTACKS))
    eps: list[float] = Field(
        default_factory=lambda: [0.02, 0.05, 0.1], description="L-inf radii on [0, 1] pixels"
    )
    pgd_steps: int = Field(10, ge=1)
    pgd_step_ratio: float = Field(0.25, gt=0, le=1, description="PGD step = ratio * eps")
    pgd_random_init: bool = True
    autoattack_eps: list[float] = Field(
        default_factory=list, description="radii at which AutoAttack runs too (empty: it does not)"
    )
    autoattack_iter: int = Field(100, ge=1, description="APGD iterations")
    autoattack_restarts: int = Field(1, ge=1)
    autoattack_square_queries: int = Field(5000, ge=1, description="Square attack's queries")
    attack_images: int = Field(2000, ge=1, description="stratified test subset for the attacks")
    corruptions: list[str] = Field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    corruption_images: int = Field(2000, ge=1, description="stratified test subset, corruptions")
    saliency_per_class: int = Field(2, ge=0, description="IG maps per leaf class")
    saliency_mistakes: int = Field(12, ge=0, description="IG maps of misclassified images")
    ig_steps: int = Field(32, ge=2)
    neighbour_pool: int = Field(10000, ge=1, description="train images searched for neighbours")
    neighbours: int = Field(5, ge=1, description="neighbours shown per query")
    batch_size: int = Field(256, ge=1)
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = Field(None, description="CPU threads; default: every core")
    gate: RobustnessGate = Field(default_factory=RobustnessGate)

    @model_validator(mode="after")
    def _consistent(self) -> RobustnessConfig:
        check_corruptions(self.corruptions, self.severities)
        if any(not 0 < e <= 1 for e in self.eps):
            raise ValueError(f"eps values must be in (0, 1] (pixels on [0, 1]), got {self.eps}")
        if any(not 0 < e <= 1 for e in self.autoattack_eps):
            raise ValueError(f"autoattack_eps must be in (0, 1], got {self.autoattack_eps}")
        measured = self.autoattack_eps if self.gate.attack == "autoattack" else self.eps
        if (self.gate.attack != "autoattack" and self.gate.attack not in self.attacks) or not any(
            abs(self.gate.eps - e) < 1e-12 for e in measured
        ):
            raise ValueError(
                f"gate reads {self.gate.attack} at eps={self.gate.eps}, which is not measured "
                f"(attacks {self.attacks}, eps {self.eps}, autoattack_eps {self.autoattack_eps})"
            )
        return self


def robust_key(level: str, attack: str, eps: float) -> str:
    """``robust_accuracy_<level>_<attack>_eps<eps>``, e.g. ``robust_accuracy_fine_pgd_eps0.1``."""
    return f"robust_accuracy_{level}_{attack}_eps{eps:g}"


def own_loss_key(level: str, attack: str, eps: float) -> str:
    """:func:`robust_key` of ``level`` under the attack aimed at that level's own loss."""
    return f"{robust_key(level, attack, eps)}_own_loss"


def level_keys(tree: Hierarchy) -> list[str]:
    """Result names of the levels: the coarse levels' names, then ``fine`` for the leaves."""
    return [*tree.level_names[:-1], FINE]


def check_gate(metrics: dict[str, Any], gate: RobustnessGate) -> str:
    """A one-line verdict when ``metrics`` meet the gate.

    Raises:
        RobustnessGateError: the gate's metric is missing or below ``min_accuracy``.
    """
    value = metrics.get(gate.metric)
    if value is None:
        measured = sorted(k for k in metrics if k.startswith("robust_accuracy_"))
        raise RobustnessGateError(
            f"robustness gate reads {gate.metric!r}, which was not measured; measured: {measured}"
        )
    if value < gate.min_accuracy:
        raise RobustnessGateError(
            f"robust accuracy too low: {gate.metric} = {value:.4f} < minimum "
            f"{gate.min_accuracy:.4f} ({gate.level} level under {gate.attack.upper()} at "
            f"eps={gate.eps:g} on {metrics.get('attack_images', '?')} test images); "
            "train with classifier.adversarial or lower robustness.gate.min_accuracy"
        )
    verdict = f"{gate.metric} = {value:.4f} >= {gate.min_accuracy:.4f}"
    own = metrics.get(own_loss_key(gate.level, gate.attack, gate.eps))
    if gate.loss == "leaf" and own is not None:  # what an attack on the level itself leaves
        verdict += f" (aimed at the {gate.level} itself: {own:.4f})"
    return verdict
