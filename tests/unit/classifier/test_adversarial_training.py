"""PGD adversarial training appended to the clean run of the one classifier loop."""

from __future__ import annotations

from pathlib import Path

import torch

from models.attacks.adversarial_training import AdversarialTrainingConfig
from models.classifier.io import TrainedClassifier
from models.classifier.training import fit_classifier
from tests.toy_models import ARCH, TREE, square_images, tiny_config


def test_adversarial_fine_tuning_appends_epochs_and_leaves_the_clean_run_alone(
    tmp_path: Path,
) -> None:
    images, labels = square_images(96, seed=9)
    plain = fit_classifier(tiny_config(epochs=2), ARCH, TREE, images, labels)
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
