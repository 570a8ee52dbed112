"""The GAN: shapes, losses, a few steps, bitwise resume, the artifact, the linear probe."""

from pathlib import Path

import numpy as np
import pytest
import torch

from models.data.dataset import stratified_fraction
from models.gan.config import GanTrainConfig
from models.gan.io import TrainedGan
from models.gan.losses import LOSSES, real_fake_logit
from models.gan.networks import Discriminator, GanArchitecture, Generator, build_gan
from models.gan.probe import fit_linear_probe, probe_accuracy
from models.gan.training import GanTrainer, TrainerCallback
from models.runtime.checkpoint import CheckpointError


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("num_classes", "sn"), [(0, False), (10, True)])
def test_shapes(size: int, channels: int, num_classes: int, sn: bool) -> None:
    arch = GanArchitecture(
        image_size=size,
        channels=channels,
        latent_dim=16,
        g_width=8,
        d_width=8,
        num_classes=num_classes,
        spectral_norm=sn,
    )
    g, d = Generator(arch), Discriminator(arch)
    z = torch.randn(3, 16)
    x = g(z)
    assert x.shape == (3, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    logits = d(x)
    assert logits.shape == ((3,) if num_classes == 0 else (3, num_classes))
    feats = d.features(x)
    assert feats.shape == (3, d.feature_dim)


def test_architecture_rejects_unsupported_shapes() -> None:
    with pytest.raises(ValueError, match="image_size must be one of"):
        GanArchitecture(image_size=48)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        GanArchitecture(channels=2)


def test_losses_signatures() -> None:
    high, low = torch.full((8,), 4.0), torch.full((8,), -4.0)
    for name in ("bce", "hinge"):
        loss = LOSSES[name]()
        assert loss(high, low) < loss(low, high)  # D: real judged real is good
        assert loss(high) < loss(low)  # G: fakes judged real is good
    fm = LOSSES["feature_matching"]()
    a = torch.randn(16, 5)
    assert fm(a, a + 0.0) == 0
    assert fm(a, a + 1.0) > 0
    logits = torch.randn(4, 10)
    torch.testing.assert_close(real_fake_logit(logits), torch.log(torch.exp(logits).sum(1)))


def toy_images(n: int = 256, size: int = 28, seed: int = 0) -> np.ndarray:
    """Bright squares on dark ground at random places: easy to tell from a fresh generator."""
    rng = np.random.default_rng(seed)
    out = np.full((n, size, size, 1), 10, np.uint8)
    for i in range(n):
        r, c = rng.integers(0, size - 10, 2)
        out[i, r : r + 10, c : c + 10] = 240
    return out


def small_config(**kw) -> GanTrainConfig:
    base = dict(
        architecture=GanArchitecture(latent_dim=16, g_width=8, d_width=8),
        steps=12,
        batch_size=32,
        log_every=1,
        checkpoint_every=4,
        sample_every=6,
        progress=False,
        num_threads=1,
        lr_d=1e-3,
    )
    base.update(kw)
    return GanTrainConfig(**base)


def test_a_few_steps_reduce_the_discriminator_loss(tmp_path: Path) -> None:
    result = GanTrainer(small_config(steps=30), toy_images(), tmp_path).fit()
    d_loss = [h["d_loss"] for h in result.history]
    assert np.mean(d_loss[-5:]) < 0.5 * np.mean(d_loss[:3])
    assert (tmp_path / "checkpoint.pt").exists()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir())[0] == "step_0000006.png"


class KillAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_checkpoint(self, step: int, path: Path) -> None:
        if step == self.step:
            raise KeyboardInterrupt("killed")


def _all_state(trainer: GanTrainer) -> dict[str, torch.Tensor]:
    out = {f"g.{k}": v for k, v in trainer.generator.state_dict().items()}
    out |= {f"d.{k}": v for k, v in trainer.discriminator.state_dict().items()}
    for name, opt in (("og", trainer.opt_g), ("od", trainer.opt_d)):
        for pid, st in opt.state_dict()["state"].items():
            out |= {f"{name}.{pid}.{k}": v for k, v in st.items() if torch.is_tensor(v)}
    return out


def test_resume_after_a_kill_is_bitwise_identical(tmp_path: Path) -> None:
    images = toy_images()
    straight = GanTrainer(small_config(), images, tmp_path / "a")
    straight.fit()
    killed = GanTrainer(small_config(), images, tmp_path / "b", callbacks=[KillAt(8)])
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    assert killed.step == 8
    (tmp_path / "b" / ".checkpoint.pt.123.partial").write_bytes(b"half a file")  # a killed write
    resumed = GanTrainer(small_config(), images, tmp_path / "b")
    result = resumed.fit()
    assert result.resumed_from == 8 and result.steps == 12
    a, b = _all_state(straight), _all_state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    GanTrainer(small_config(steps=4), toy_images(), tmp_path).fit()
    with pytest.raises(CheckpointError, match="belongs to another run"):
        GanTrainer(small_config(steps=4, lr_g=1e-3), toy_images(), tmp_path).fit()


def test_semi_supervised_reads_only_the_allowed_labels(tmp_path: Path) -> None:
    images = toy_images(200)
    labels = np.arange(200) % 4
    allowed = stratified_fraction(labels, 0.1, seed=0)
    assert len(allowed) == 20 and set(labels[allowed]) == {0, 1, 2, 3}
    poisoned = np.full(200, 10_000)  # any use of a label outside `allowed` would crash
    poisoned[allowed] = labels[allowed]
    arch = GanArchitecture(latent_dim=16, g_width=8, d_width=8, num_classes=10_001)
    config = small_config(mode="semi-supervised", architecture=arch, steps=3, labelled_batch_size=8)
    trainer = GanTrainer(config, images, tmp_path, labels=poisoned, labelled_indices=allowed)
    result = trainer.fit()
    assert set(trainer.labelled_labels.tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(result.labelled_indices, allowed)
    assert "d_supervised" in result.history[-1]


def test_trainer_rejects_mismatched_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="architecture expects"):
        GanTrainer(small_config(), toy_images(8, size=32), tmp_path)
    with pytest.raises(ValueError, match="uint8"):
        GanTrainer(small_config(), toy_images(8).astype(np.float32), tmp_path)


def test_trained_gan_round_trip(tmp_path: Path) -> None:
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8, spectral_norm=True)
    g, d = build_gan(arch, seed=1)
    saved = TrainedGan.from_networks(g, d, {"steps": 3}, samples_png=b"\x89PNG")
    saved.save(tmp_path)
    loaded = TrainedGan.load(tmp_path)
    assert loaded.info == {"steps": 3} and loaded.architecture == arch
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded.discriminator().features(x), d.eval().features(x))
    z = torch.randn(2, 8)
    torch.testing.assert_close(loaded.generator()(z), g.eval()(z))


def test_linear_probe_separates_blobs() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=gen) * 4
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 8, generator=gen)
    w, b, mean, std = fit_linear_probe(x[:200], y[:200], 3)
    acc = ((((x[200:] - mean) / std) @ w + b).argmax(1) == y[200:]).float().mean()
    assert acc > 0.95


def test_probe_accuracy_per_level() -> None:
    images = toy_images(120)
    labels = np.stack([np.arange(120) % 2, np.arange(120) % 4], axis=1)
    _, d = build_gan(GanArchitecture(latent_dim=8, g_width=8, d_width=8), seed=0)
    accs = probe_accuracy(d, images[:80], labels[:80], images[80:], labels[80:], [2, 4])
    assert len(accs) == 2 and all(0 <= a <= 1 for a in accs)


def test_run_key_depends_on_what_changes_the_numbers() -> None:
    base = GanTrainConfig()
    assert base.run_key("h") == GanTrainConfig(device="cpu", progress=False, log_every=7).run_key(
        "h"
    )
    assert base.run_key("h") != GanTrainConfig(lr_g=1e-3).run_key("h")
    assert base.run_key("h") != base.run_key("other data")

    class WithStepOptions(GanTrainConfig):
        checkpoint_root: str = "x"

    assert WithStepOptions(checkpoint_root="y").run_key("h") == base.run_key("h")


def test_config_fits_the_architecture_to_the_data() -> None:
    cfg = GanTrainConfig().for_data((32, 32, 3), num_classes=10)
    assert (cfg.architecture.image_size, cfg.architecture.channels) == (32, 3)
    assert cfg.architecture.num_classes == 0
    semi = GanTrainConfig(mode="semi-supervised").for_data((28, 28, 1), num_classes=10)
    assert semi.architecture.num_classes == 10
    with pytest.raises(ValueError, match="image_size must be one of"):
        GanTrainConfig().for_data((48, 48, 1), num_classes=10)
