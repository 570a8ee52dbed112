"""PGD adversarial training appended to the clean run of the one classifier loop."""

from __future__ import annotations

from pathlib import Path

import torch

from models.attacks.config import AdversarialTrainingConfig
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


def test_trades_and_pgd_from_the_start_are_options_of_the_one_loop() -> None:
    images, labels = square_images(64, seed=3)
    trades = AdversarialTrainingConfig(
        method="trades", beta=6.0, from_start=True, epochs=0, eps=0.1, steps=2
    )
    run = fit_classifier(tiny_config(epochs=2, adversarial=trades), ARCH, TREE, images, labels)
    assert [h["adversarial"] for h in run.history] == [1.0, 1.0]  # both epochs attacked
    assert run.adversarial_seconds > 0
    pgd = AdversarialTrainingConfig(from_start=True, epochs=1, eps=0.1, steps=1)
    run = fit_classifier(tiny_config(epochs=1, adversarial=pgd), ARCH, TREE, images, labels)
    assert len(run.history) == 2 and all(h["adversarial"] == 1.0 for h in run.history)


def test_trades_examples_stay_in_the_ball_and_raise_the_kl() -> None:
    from models.attacks.trades import kl_adversarial_examples, leaf_kl
    from models.tree.merge import TreeTensors

    images, labels = square_images(32, seed=4)
    model = fit_classifier(tiny_config(epochs=2), ARCH, TREE, images, labels).model
    tt = TreeTensors(TREE)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    config = AdversarialTrainingConfig(method="trades", eps=0.1, steps=5, step_ratio=0.25)
    g = torch.Generator().manual_seed(0)
    adv = kl_adversarial_examples(model, tt, x, config, g)
    assert (adv - x).abs().max() <= 2 * 0.1 + 1e-6 and adv.min() >= -1 and adv.max() <= 1
    assert not model.training and all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        clean, attacked = model(x), model(adv)
        noise = model((x + 0.2 * (torch.rand_like(x) - 0.5)).clamp(-1, 1))
    assert leaf_kl(clean, attacked, tt) > leaf_kl(clean, noise, tt)


def test_torch_pgd_stays_in_the_ball_and_beats_art_pgd_on_the_same_budget() -> None:
    from models.attacks.evasion import MergedLeafModel, art_classifier, make_attack, run_attack
    from models.attacks.trades import pgd_adversarial_examples
    from models.tree.merge import TreeTensors, merged_log_probs

    images, labels = square_images(64, seed=5)
    model = fit_classifier(tiny_config(epochs=3), ARCH, TREE, images, labels).model
    tt = TreeTensors(TREE)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    leaves = torch.from_numpy(labels).long()
    config = AdversarialTrainingConfig(backend="torch", eps=0.1, steps=10, step_ratio=0.25)
    g = torch.Generator().manual_seed(0)
    adv = pgd_adversarial_examples(model, tt, x, leaves, config, g)
    assert (adv - x).abs().max() <= 2 * 0.1 + 1e-6 and adv.min() >= -1 and adv.max() <= 1
    assert not model.training and all(p.requires_grad for p in model.parameters())

    def nll(batch: torch.Tensor) -> float:
        with torch.no_grad():
            return float(-merged_log_probs(model(batch), tt)[torch.arange(len(x)), leaves].mean())

    # the same attack as ART's PGD (same radius, steps, step): the same loss rise, give or take
    merged = MergedLeafModel(model, tt)
    art = make_attack(
        art_classifier(merged, (1, 28, 28), torch.device("cpu")), "pgd", 0.1, steps=10
    )
    art_adv = run_attack(art, merged, ((x + 1) / 2).numpy(), labels, seed=0)
    art_nll = nll(torch.from_numpy(art_adv) * 2 - 1)
    assert nll(adv) > nll(x) and nll(adv) > 0.8 * art_nll


def test_pgd_backend_torch_trains_through_the_one_loop() -> None:
    images, labels = square_images(64, seed=6)
    pgd = AdversarialTrainingConfig(backend="torch", from_start=True, epochs=0, eps=0.1, steps=2)
    run = fit_classifier(tiny_config(epochs=2, adversarial=pgd), ARCH, TREE, images, labels)
    assert [h["adversarial"] for h in run.history] == [1.0, 1.0]
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
