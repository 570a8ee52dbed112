"""Attacks, corruptions, the robustness evaluation and gate, adversarial fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from models.attacks import (
    AdversarialTrainingConfig,
    MergedLeafModel,
    art_classifier,
    make_attack,
    predict_leaf_log_probs,
    run_attack,
    to_unit_range,
)
from models.classifier import ClassifierConfig, fit_classifier
from models.classifier_io import TrainedClassifier
from models.corruptions import CORRUPTIONS, corrupt
from models.gan import GanArchitecture
from models.hierarchy import load_builtin_tree
from models.merge import TreeTensors
from models.robustness import (
    RobustnessConfig,
    RobustnessGate,
    RobustnessGateError,
    check_gate,
    evaluate_robustness,
)

TREE = load_builtin_tree("fashion-mnist")
ARCH = GanArchitecture(latent_dim=8, g_width=8, d_width=8)


def toy_images(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose class is where a bright square sits, over faint noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % TREE.num_leaves
    images = rng.integers(0, 40, size=(n, 28, 28, 1)).astype(np.uint8)
    for i, lab in enumerate(labels):
        r, c = 3 + 8 * (lab // 4), 2 + 6 * (lab % 4)
        images[i, r : r + 6, c : c + 6] = 230
    return images, labels


def tiny_config(**update: object) -> ClassifierConfig:
    base = dict(
        init="scratch",
        epochs=3,
        batch_size=32,
        hidden=32,
        lr=5e-3,
        augment=False,
        num_threads=1,
        freeze_epochs=0,
    )
    return ClassifierConfig(**(base | update))


@pytest.fixture(scope="module")
def trained() -> TrainedClassifier:
    images, labels = toy_images()
    config = tiny_config()
    fit = fit_classifier(config, ARCH, TREE, images, labels)
    model = TrainedClassifier.from_model(fit.model, config, TREE, {})
    model.temperatures = [1.2, 0.9, 1.1]
    return model


def merged(model: TrainedClassifier) -> MergedLeafModel:
    return MergedLeafModel(model.build(), TreeTensors(TREE), model.temperatures).eval()


def test_merged_model_is_the_calibrated_leaf_distribution(trained: TrainedClassifier) -> None:
    images, _ = toy_images(40, seed=1)
    log_probs = predict_leaf_log_probs(merged(trained), to_unit_range(images))
    np.testing.assert_allclose(
        log_probs.exp().numpy(), trained.predict_proba(images), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("attack_name", ["fgsm", "pgd"])
@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_attacks_raise_the_loss_and_stay_in_the_eps_ball(
    trained: TrainedClassifier, attack_name: str, eps: float
) -> None:
    images, labels = toy_images(60, seed=2)
    model = merged(trained)
    x = to_unit_range(images)
    attack = make_attack(art_classifier(model, (1, 28, 28), torch.device("cpu")), attack_name, eps)
    adv = run_attack(attack, model, x, labels, seed=0)
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert np.abs(adv - x).max() <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    y = torch.from_numpy(labels)
    clean_nll = torch.nn.functional.nll_loss(predict_leaf_log_probs(model, x), y)
    adv_nll = torch.nn.functional.nll_loss(predict_leaf_log_probs(model, adv), y)
    assert adv_nll > clean_nll
    # the weights were left as they were: trainable, and without a gradient from the attack
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_pgd_is_deterministic_given_a_seed(trained: TrainedClassifier) -> None:
    images, labels = toy_images(20, seed=3)
    model = merged(trained)
    attack = make_attack(art_classifier(model, (1, 28, 28), torch.device("cpu")), "pgd", 0.05)
    x = to_unit_range(images)
    first = run_attack(attack, model, x, labels, seed=7)
    np.testing.assert_array_equal(first, run_attack(attack, model, x, labels, seed=7))
    assert not np.array_equal(first, run_attack(attack, model, x, labels, seed=8))


def test_unknown_attack_is_named() -> None:
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        make_attack(None, "cw", 0.1)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_are_deterministic_and_keep_shape_and_range(name: str) -> None:
    images, _ = toy_images(24, seed=4)
    for severity in (1, 3, 5):
        out = corrupt(images, name, severity, seed=0)
        assert out.shape == images.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, corrupt(images, name, severity, seed=0))
        assert not np.array_equal(out, images), f"{name} at severity {severity} changed nothing"
    np.testing.assert_array_equal(corrupt(images, name, 0, seed=0), images)


def test_corruption_severity_grows_the_change() -> None:
    images, _ = toy_images(24, seed=5)
    for name in ("gaussian_noise", "gaussian_blur", "contrast", "rotation"):
        change = [np.abs(corrupt(images, name, s).astype(int) - images).mean() for s in (1, 3, 5)]
        assert change[0] < change[1] < change[2], (name, change)


def test_noise_depends_on_the_seed_and_rgb_images_work() -> None:
    images, _ = toy_images(8, seed=6)
    assert not np.array_equal(
        corrupt(images, "gaussian_noise", 2, seed=0), corrupt(images, "gaussian_noise", 2, seed=1)
    )
    rgb = np.repeat(images, 3, axis=-1)
    for name in CORRUPTIONS:
        assert corrupt(rgb, name, 2).shape == rgb.shape


def test_bad_corruption_inputs_are_named() -> None:
    images, _ = toy_images(4)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severities must be in"):
        corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="expects uint8"):
        corrupt(images.astype(np.float32), "contrast", 1)


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


def test_evaluation_reports_every_level_attack_and_corruption(trained: TrainedClassifier) -> None:
    test_x, test_y = toy_images(60, seed=7)
    train_x, train_y = toy_images(100, seed=8)
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
    result = evaluate_robustness(trained, test_x, test_y, config, train_x, train_y)
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


def test_adversarial_fine_tuning_appends_epochs_and_leaves_the_clean_run_alone(
    tmp_path: Path,
) -> None:
    images, labels = toy_images(96, seed=9)
    plain = fit_classifier(tiny_config(epochs=2), ARCH, TREE, images, labels)
    assert plain.adversarial_seconds == 0.0  # no option, no cost recorded (a default, not a clock)
    assert all("adversarial" not in h for h in plain.history)
    adv_config = tiny_config(
        epochs=2, adversarial=AdversarialTrainingConfig(epochs=1, eps=0.1, steps=2, fraction=0.5)
    )
    adv = fit_classifier(adv_config, ARCH, TREE, images, labels)
    assert len(adv.history) == 3 and adv.history[-1]["adversarial"] == 1.0
    # the clean epochs are the run without the option, step for step
    assert [h["train_loss"] for h in adv.history[:2]] == [h["train_loss"] for h in plain.history]
    changed = [
        not torch.equal(a, b)
        for a, b in zip(
            adv.model.state_dict().values(), plain.model.state_dict().values(), strict=True
        )
    ]
    assert any(changed)
    saved = TrainedClassifier.from_model(adv.model, adv_config, TREE, {})
    saved.save(tmp_path)
    assert TrainedClassifier.load(tmp_path).config.adversarial == adv_config.adversarial


def test_a_gate_on_an_unknown_level_fails_before_any_work(trained: TrainedClassifier) -> None:
    test_x, test_y = toy_images(20, seed=10)
    config = RobustnessConfig(gate=RobustnessGate(level="item"))
    with pytest.raises(ValueError, match=r"gate.level 'item' is not a level.*'fine'"):
        evaluate_robustness(trained, test_x, test_y, config)
