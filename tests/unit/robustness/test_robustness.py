"""The robustness evaluation per level, its config and its gate."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.classifier.io import TrainedClassifier
from models.robustness.config import (
    RobustnessConfig,
    RobustnessGate,
    RobustnessGateError,
    check_gate,
)
from models.robustness.evaluate import evaluate_robustness
from tests.toy_models import square_images


def _pgd_only(attack_images: int, **fields) -> RobustnessConfig:
    """PGD-5 at eps 0.1 on ``attack_images``, one corruption, no pictures: a quick evaluation."""
    return RobustnessConfig(
        **{
            "attacks": ["pgd"],
            "eps": [0.1],
            "pgd_steps": 5,
            "attack_images": attack_images,
            "corruptions": ["gaussian_noise"],
            "severities": [1],
            "corruption_images": 10,
            "saliency_per_class": 0,
            "saliency_mistakes": 0,
        }
        | fields
    )


def test_config_rejects_a_gate_on_an_unmeasured_attack_and_unknown_corruptions() -> None:
    with pytest.raises(ValidationError, match="not measured"):
        RobustnessConfig(eps=[0.05], gate=RobustnessGate(eps=0.1))
    with pytest.raises(ValidationError, match="not measured"):
        RobustnessConfig(attacks=["fgsm"])
    with pytest.raises(ValidationError, match="unknown corruption"):
        RobustnessConfig(corruptions=["fog"])
    with pytest.raises(ValidationError, match="Extra inputs"):
        RobustnessConfig(epsilon=[0.1])


def test_gate_fails_below_the_bound_and_passes_at_or_above() -> None:
    gate = RobustnessGate(min_accuracy=0.6, attack="pgd", eps=0.1)
    assert gate.metric == "robust_accuracy_fine_pgd_eps0.1"
    with pytest.raises(RobustnessGateError, match=r"robust_accuracy_fine_pgd_eps0.1 = 0.5900 < "):
        check_gate({gate.metric: 0.59, "attack_images": 100}, gate)
    assert "0.6000 >= 0.6000" in check_gate({gate.metric: 0.6}, gate)
    with pytest.raises(RobustnessGateError, match="was not measured"):
        check_gate({"robust_accuracy_fine_fgsm_eps0.1": 0.9}, gate)
    coarse = RobustnessGate(min_accuracy=0.9, level="category", attack="fgsm", eps=0.05)
    assert "robust_accuracy_category_fgsm_eps0.05" in check_gate(
        {"robust_accuracy_category_fgsm_eps0.05": 0.95}, coarse
    )


def test_a_gate_on_a_levels_own_loss_reads_its_own_key_and_a_leaf_gate_shows_it() -> None:
    own = RobustnessGate(min_accuracy=0.6, level="category", loss="level", eps=0.05)
    assert own.metric == "robust_accuracy_category_pgd_eps0.05_own_loss"
    metrics = {"robust_accuracy_category_pgd_eps0.05": 0.88, own.metric: 0.599}
    with pytest.raises(RobustnessGateError, match=r"_own_loss = 0.5990 < minimum 0.6000"):
        check_gate(metrics, own)
    leaf = RobustnessGate(min_accuracy=0.85, level="category", eps=0.05)
    assert check_gate(metrics, leaf) == (
        "robust_accuracy_category_pgd_eps0.05 = 0.8800 >= 0.8500 "
        "(aimed at the category itself: 0.5990)"
    )
    # the leaf has no other loss: "level" reads the grid's own key
    assert RobustnessGate(loss="level").metric == "robust_accuracy_fine_pgd_eps0.1"
    with pytest.raises(ValidationError, match="loss"):
        RobustnessGate(loss="node")


def test_a_coarse_gate_level_is_attacked_on_its_own_loss_too(
    square_classifier: TrainedClassifier,
) -> None:
    test_x, test_y = square_images(60, seed=7)
    config = _pgd_only(60, gate=RobustnessGate(level="group", loss="level", eps=0.1))
    result = evaluate_robustness(square_classifier, test_x, test_y, config)
    m = result.metrics
    [own] = m["level_attacks"]
    assert (own["level"], own["attack"], own["eps"]) == ("group", "pgd", 0.1)
    assert own["max_linf"] <= 0.1 + 1e-6
    assert m["robust_accuracy_group_pgd_eps0.1_own_loss"] == own["accuracy_group"]
    assert m["gate"]["metric"] == "robust_accuracy_group_pgd_eps0.1_own_loss"
    assert m["gate"]["value"] == own["accuracy_group"]
    # aimed at the group, the attack leaves no more groups right than the leaf's attack does
    leaf_attack = m["robust_accuracy_group_pgd_eps0.1"]
    assert own["accuracy_group"] <= leaf_attack + 0.05 and own["accuracy_group"] < 1.0
    assert "| pgd on the group's own loss | 0.1 |" in result.tables["attacks"]
    fine_gate = config.model_copy(update={"gate": RobustnessGate(min_accuracy=0.0, eps=0.1)})
    assert (
        evaluate_robustness(square_classifier, test_x, test_y, fine_gate).metrics["level_attacks"]
        == []
    )


def test_evaluation_reports_every_level_attack_and_corruption(
    square_classifier: TrainedClassifier,
) -> None:
    test_x, test_y = square_images(60, seed=7)
    train_x, train_y = square_images(100, seed=8)
    config = RobustnessConfig(
        eps=[0.02, 0.1],
        pgd_steps=3,
        attack_images=40,
        corruptions=["gaussian_noise", "rotation"],
        severities=[1, 5],
        corruption_images=30,
        saliency_per_class=1,
        saliency_mistakes=2,
        ig_steps=4,
        neighbour_pool=50,
        neighbours=3,
        gate=RobustnessGate(min_accuracy=0.0, eps=0.1),
    )
    result = evaluate_robustness(square_classifier, test_x, test_y, config, train_x, train_y)
    m = result.metrics
    assert m["attack_images"] == 40 and m["corruption_images"] == 30
    for level in ("category", "group", "fine"):
        clean = m[f"clean_accuracy_{level}"]
        for attack in ("fgsm", "pgd"):
            for eps in (0.02, 0.1):
                assert 0.0 <= m[f"robust_accuracy_{level}_{attack}_eps{eps:g}"] <= clean + 1e-9
        assert 0.0 <= m[f"corruption_accuracy_{level}"] <= 1.0
    assert 0.0 <= m["graceful_category_pgd_eps0.1"] <= 1.0
    assert m["attacks"]["pgd"]["0.1"]["max_linf"] <= 0.1 + 1e-6
    assert set(m["corruptions"]) == {"gaussian_noise", "rotation"}
    assert set(m["corruptions"]["rotation"]) == {"1", "5", "mean"}
    assert m["gate"] == {
        "metric": "robust_accuracy_fine_pgd_eps0.1",
        "value": m["robust_accuracy_fine_pgd_eps0.1"],
        "min_accuracy": 0.0,
        "passed": True,
    }
    assert set(result.pictures) == {
        "robustness_curves",
        "saliency_per_class",
        "saliency_mistakes",
        "adversarial_examples",
        "neighbours",
    } - (set() if (m["clean"]["leaf_mistakes"]) else {"saliency_mistakes"})
    assert all(png.startswith(b"\x89PNG") for png in result.pictures.values())
    assert result.tables["attacks"].count("\n") == 2 + 1 + 4
    assert "| rotation |" in result.tables["corruptions"]


def test_a_gate_on_an_unknown_level_fails_before_any_work(
    square_classifier: TrainedClassifier,
) -> None:
    test_x, test_y = square_images(20, seed=10)
    config = RobustnessConfig(gate=RobustnessGate(level="item"))
    with pytest.raises(ValueError, match=r"gate.level 'item' is not a level.*'fine'"):
        evaluate_robustness(square_classifier, test_x, test_y, config)


def test_autoattack_is_scored_per_level_and_no_weaker_than_pgd(
    square_classifier: TrainedClassifier,
) -> None:
    test_x, test_y = square_images(40, seed=7)
    config = _pgd_only(
        40,
        autoattack_eps=[0.1],
        autoattack_iter=5,
        autoattack_square_queries=20,
        gate=RobustnessGate(attack="autoattack", eps=0.1),
    )
    m = evaluate_robustness(square_classifier, test_x, test_y, config).metrics
    aa = m["attacks"]["autoattack"]["0.1"]
    assert aa["max_linf"] <= 0.1 + 1e-5
    for level in ("category", "group", "fine"):
        assert (
            0.0 <= m[f"robust_accuracy_{level}_autoattack_eps0.1"] <= m[f"clean_accuracy_{level}"]
        )
    # AutoAttack starts from the images PGD-like attacks miss; it finds at least as many
    assert (
        m["robust_accuracy_fine_autoattack_eps0.1"] <= m["robust_accuracy_fine_pgd_eps0.1"] + 0.05
    )
    assert m["gate"]["metric"] == "robust_accuracy_fine_autoattack_eps0.1"
    with pytest.raises(ValidationError, match="not measured"):
        RobustnessConfig(gate=RobustnessGate(attack="autoattack", eps=0.1))
