"""The promotion gate as a pure decision on numbers."""

from __future__ import annotations

from models.evaluation.promotion import Decision, PromotionGates, decide

GATES = PromotionGates(min_accuracy=0.3, max_ece=0.5, max_accuracy_drop=0.0)


def test_first_model_is_judged_by_absolute_gates_only() -> None:
    ok = decide({"accuracy_fine": 0.9, "ece_fine": 0.01}, None, GATES)
    assert ok.promote and any("absolute gates only" in r for r in ok.reasons)
    bad = decide({"accuracy_fine": 0.2, "ece_fine": 0.01}, None, GATES)
    assert not bad.promote and bad.reasons[0].startswith("FAIL fine accuracy 0.2000")


def test_robust_accuracy_is_compared_only_when_both_have_it() -> None:
    gates = PromotionGates(min_accuracy=0.5, max_ece=0.5, robust_metric="robust_x")
    champion = {"accuracy_fine": 0.9, "ece_fine": 0.01, "robust_x": 0.6}
    weaker = {"accuracy_fine": 0.9, "ece_fine": 0.01, "robust_x": 0.5}
    decision: Decision = decide(weaker, champion, gates)
    assert not decision.promote
    assert [c["gate"] for c in decision.checks if not c["passed"]] == ["robust_vs_champion"]
    unmeasured = {"accuracy_fine": 0.9, "ece_fine": 0.01}
    assert decide(unmeasured, champion, gates).promote


def test_a_minimum_ood_auroc_gates_only_when_configured() -> None:
    gates = PromotionGates(min_accuracy=0.5, max_ece=0.5, min_ood_auroc=0.95)
    base = {"accuracy_fine": 0.9, "ece_fine": 0.01}
    assert decide(base | {"ood_auroc": 0.97}, None, gates).promote
    low = decide(base | {"ood_auroc": 0.9}, None, gates)
    assert not low.promote and "FAIL OOD AUROC 0.9000 >= 0.9500" in low.reasons
    unmeasured = decide(base, None, gates)
    assert not unmeasured.promote
    assert any("OOD AUROC not measured" in r for r in unmeasured.reasons)
    assert decide(base, None, PromotionGates(min_accuracy=0.5, max_ece=0.5)).promote
