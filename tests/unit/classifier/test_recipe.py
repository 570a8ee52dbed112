"""The training recipe's levers: erasing, label smoothing, warm-up, weight averaging, TTA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.classifier.augment import erase_batch
from models.classifier.averaging import WeightAverage
from models.classifier.io import TrainedClassifier
from models.classifier.losses import conditional_nll
from models.classifier.training import Phase, fit_classifier
from models.tree.merge import TreeTensors
from tests.toy_models import ARCH, TREE, random_logits, square_images, tiny_config


def test_random_erasing_erases_rectangles_of_noise_on_the_chosen_images_only() -> None:
    x = torch.full((64, 1, 28, 28), 0.25)
    out = erase_batch(x, torch.Generator().manual_seed(0), probability=0.5)
    changed = (out != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54 and out.min() >= -1 and out.max() <= 1
    for img in out[changed]:
        rows = (img[0] != 0.25).any(1).nonzero().flatten()
        cols = (img[0] != 0.25).any(0).nonzero().flatten()
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert area <= 0.4 * 784 * 1.2  # one rectangle of at most ~40 % of the image
    assert torch.equal(erase_batch(x, torch.Generator().manual_seed(0), probability=0.0), x)


def test_label_smoothing_spreads_the_target_over_the_true_siblings_only() -> None:
    tt = TreeTensors(TREE)
    logits = random_logits(16)
    y = torch.from_numpy(TREE.all_level_labels(torch.arange(16).remainder(10).numpy()))
    plain = conditional_nll(logits, y, tt, [1.0, 1.0, 1.0])
    assert conditional_nll(logits, y, tt, [1, 1, 1], smoothing=0.0) == plain
    # uniform logits: every sibling group's conditional is uniform, smoothing changes nothing
    flat = [torch.zeros_like(z) for z in logits]
    torch.testing.assert_close(
        conditional_nll(flat, y, tt, [1, 1, 1], 0.3), conditional_nll(flat, y, tt, [1, 1, 1])
    )
    # a node's logit outside the true parent's group does not enter the smoothed loss
    bumped = [z.clone() for z in logits]
    true_group = tt.sibling_masks[2][tt.parents[2][y[:, 2]]]
    bumped[2][~true_group] += 100.0
    torch.testing.assert_close(
        conditional_nll(bumped, y, tt, [1, 1, 1], 0.2),
        conditional_nll(logits, y, tt, [1, 1, 1], 0.2),
    )


def test_warm_up_then_cosine() -> None:
    phase = Phase("p", epochs=10, lr_scale=2.0, warmup_epochs=1)
    factors = [phase.lr_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.2) and factors[9] == pytest.approx(2.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert Phase("q", 1).lr_factor(0, 10, 10) == pytest.approx(1.0)
    assert Phase("q", 1).lr_factor(5, 10, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_weight_average_follows_the_weights_and_is_what_the_phase_leaves() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    avg = WeightAverage(net, decay=0.9)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    for _ in range(50):
        avg.update()
    avg.copy_to(net)
    assert torch.allclose(net[0].weight, start + 1.0, atol=0.02)  # converged to the live weights
    images, labels = square_images(64, seed=5)
    run = fit_classifier(tiny_config(epochs=2, ema_decay=0.9), ARCH, TREE, images, labels)
    plain = fit_classifier(tiny_config(epochs=2), ARCH, TREE, images, labels)
    # same batches and steps; the run with averaging ends on different (averaged) weights
    assert run.history[0]["train_loss"] == plain.history[0]["train_loss"]
    assert not torch.equal(run.model.heads[0].weight, plain.model.heads[0].weight)


def test_tta_flip_averages_the_mirror_images_logits_in_eval_only() -> None:
    images, labels = square_images(40, seed=6)
    config = tiny_config(epochs=1, tta_flip=True)
    model = fit_classifier(config, ARCH, TREE, images, labels).model.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        one = model.logits_from_features(model.backbone.features(x))
        mirror = model.logits_from_features(model.backbone.features(x.flip(-1)))
        features, logits = model.features_and_logits(x)
        torch.testing.assert_close(features, model.backbone.features(x))
        for z, a, b in zip(logits, one, mirror, strict=True):
            torch.testing.assert_close(z, (a + b) / 2)
        # a mirror image gets the same prediction
        for a, b in zip(model(x), model(x.flip(-1)), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    model.train()
    assert [z.shape for z in model(x)] == [z.shape for z in one]
    # the option travels with the artifact
    saved = TrainedClassifier.from_model(model, config, TREE, {})
    assert saved.build().tta_flip


def test_bf16_autocast_trains_on_cpu_too() -> None:
    images, labels = square_images(64, seed=7)
    run = fit_classifier(tiny_config(epochs=1, bf16=True), ARCH, TREE, images, labels)
    assert math.isfinite(run.history[0]["train_loss"])
    assert all(p.dtype == torch.float32 for p in run.model.parameters())


def test_bf16_setting_covers_the_per_epoch_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.classifier.training as training

    seen: list[bool] = []
    real = training.fine_accuracy

    def recording(*args: object) -> float:
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(*args)

    monkeypatch.setattr(training, "fine_accuracy", recording)
    images, labels = square_images(64, seed=8)
    for bf16 in (True, False):
        run = fit_classifier(
            tiny_config(epochs=1, bf16=bf16), ARCH, TREE, images, labels, images, labels
        )
        assert 0.0 <= run.history[0]["val_fine_accuracy"] <= 1.0
    assert seen == [True, False]
