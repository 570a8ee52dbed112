"""FGSM and PGD through ART on the merged model: inside the eps ball, raising the loss, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.attacks.evasion import (
    art_classifier,
    make_attack,
    predict_leaf_log_probs,
    run_attack,
)
from models.classifier.io import TrainedClassifier
from models.runtime.tensors import to_unit_range
from tests.toy_models import merged_model, square_images


def test_merged_model_is_the_calibrated_leaf_distribution(
    square_classifier: TrainedClassifier,
) -> None:
    images, _ = square_images(40, seed=1)
    log_probs = predict_leaf_log_probs(merged_model(square_classifier), to_unit_range(images))
    np.testing.assert_allclose(
        log_probs.exp().numpy(), square_classifier.predict_proba(images), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("attack_name", ["fgsm", "pgd"])
@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_attacks_raise_the_loss_and_stay_in_the_eps_ball(
    square_classifier: TrainedClassifier, attack_name: str, eps: float
) -> None:
    images, labels = square_images(60, seed=2)
    model = merged_model(square_classifier)
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


def test_pgd_is_deterministic_given_a_seed(square_classifier: TrainedClassifier) -> None:
    images, labels = square_images(20, seed=3)
    model = merged_model(square_classifier)
    attack = make_attack(art_classifier(model, (1, 28, 28), torch.device("cpu")), "pgd", 0.05)
    x = to_unit_range(images)
    first = run_attack(attack, model, x, labels, seed=7)
    np.testing.assert_array_equal(first, run_attack(attack, model, x, labels, seed=7))
    assert not np.array_equal(first, run_attack(attack, model, x, labels, seed=8))


def test_unknown_attack_is_named() -> None:
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        make_attack(None, "cw", 0.1)
