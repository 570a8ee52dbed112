"""The GAN loop's speed mechanics change nothing but speed: same numbers, same gradients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.gan.networks import Discriminator, GanArchitecture, average_pool, build_gan
from models.gan.objectives import StepBatch
from models.gan.training import GanTrainer, frozen
from tests.unit.gan.test_gan import _all_state, small_config, toy_images


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_generator_base_map_is_the_transposed_convolution(size: int, channels_last: bool) -> None:
    # float64: the two paths sum in different orders, and float32's rounding would make the
    # comparison depend on the random draw
    generator, _ = build_gan(GanArchitecture(image_size=size, channels=3, latent_dim=12), 0)
    generator.double()
    if channels_last:
        generator.to(memory_format=torch.channels_last)
    z = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(size))
    z.requires_grad_()
    by_matmul = generator.base_map(z)
    by_conv = generator.net[0](z.view(5, 12, 1, 1))
    torch.testing.assert_close(by_matmul, by_conv)
    assert by_matmul.is_contiguous(memory_format=torch.channels_last) == channels_last
    g = torch.randn_like(by_conv)
    grads_matmul = torch.autograd.grad(by_matmul, [z, generator.net[0].weight], g)
    grads_conv = torch.autograd.grad(by_conv, [z, generator.net[0].weight], g)
    for a, b in zip(grads_matmul, grads_conv, strict=True):
        torch.testing.assert_close(a, b)
    assert generator(z).shape == (5, 3, size, size)


@pytest.mark.parametrize(("width", "size"), [(7, 7), (14, 7), (7, 2)])
def test_feature_pooling_equals_adaptive_pooling(width: int, size: int) -> None:
    h = torch.randn(4, 6, width, width).contiguous(memory_format=torch.channels_last)
    h.requires_grad_()
    ours, reference = average_pool(h, size).flatten(1), F.adaptive_avg_pool2d(h, size).flatten(1)
    assert torch.equal(ours, reference)
    g = torch.randn_like(ours)
    ours_grad = torch.autograd.grad(ours, h, g)[0]
    assert torch.equal(ours_grad, torch.autograd.grad(reference, h, g)[0])
    # gradients keep the map's memory format (the next backward kernels' fast path)
    assert ours_grad.is_contiguous(memory_format=torch.channels_last)


def test_frozen_restores_the_flags_even_on_error() -> None:
    d = Discriminator(GanArchitecture(d_width=8))
    d.head.weight.requires_grad_(False)
    with pytest.raises(RuntimeError), frozen(d):
        assert not any(p.requires_grad for p in d.parameters())
        raise RuntimeError("boom")
    assert not d.head.weight.requires_grad
    assert all(p.requires_grad for n, p in d.named_parameters() if n != "head.weight")


@pytest.mark.parametrize("mode", ["unsupervised", "semi-supervised"])
def test_generator_update_adds_no_gradient_to_the_discriminator(mode: str, tmp_path: Path) -> None:
    classes = 10 if mode == "semi-supervised" else 0
    arch = GanArchitecture(latent_dim=16, g_width=8, d_width=8, num_classes=classes)
    config = small_config(mode=mode, architecture=arch)
    labels = np.arange(256) % 10
    trainer = GanTrainer(config, toy_images(), tmp_path / "a", labels=labels)
    trainer.train_step()
    # D's gradients after a step are those of D's own loss on the step's batch, nothing more
    fresh = GanTrainer(config, toy_images(), tmp_path / "b", labels=labels)
    real, z, labelled, y = fresh.draw_batch()
    batch = StepBatch(real, fresh.generator(z).detach(), labelled, y)
    loss, _ = fresh.objective.discriminator_loss(fresh.discriminator, batch)
    expected = torch.autograd.grad(loss, list(fresh.discriminator.parameters()))
    for p, want in zip(trainer.discriminator.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, want)
    assert all(p.grad is not None for p in trainer.generator.parameters())


def test_draw_then_update_is_the_train_step(tmp_path: Path) -> None:
    a = GanTrainer(small_config(), toy_images(), tmp_path / "a")
    b = GanTrainer(small_config(), toy_images(), tmp_path / "b")
    for _ in range(3):
        a.train_step()
        b.update(*b.draw_batch())
    sa, sb = _all_state(a), _all_state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
