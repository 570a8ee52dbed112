"""The GAN loop and the classifier loop fed by a stream of shards, at 64 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.classifier.config import ClassifierConfig
from models.classifier.training import fit_classifier
from models.data.ingest import DatasetConfig
from models.data.sharded import ShardedDataset, build_sharded_dataset
from models.gan.config import GanTrainConfig
from models.gan.training import GanTrainer
from models.tree.hierarchy import Hierarchy


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> ShardedDataset:
    from models.data.sources import SourceImages

    rng = np.random.default_rng(0)
    labels = np.arange(96) % 4
    images = rng.integers(0, 255, (96, 64, 64, 3), dtype=np.uint8)
    images[..., 0] = (labels * 60)[:, None, None]
    tree = Hierarchy("t", ("kind", "fine"), (("a", "w"), ("a", "x"), ("b", "y"), ("b", "z")))
    root = tmp_path_factory.mktemp("arrays")
    import models.data.sharded as sharded

    source = SourceImages(images, labels, tree, None, "generated")
    original = sharded.read_source
    sharded.read_source = lambda config: source  # an in-memory source, written as PNG shards
    try:
        config = DatasetConfig(
            source="cifar10", storage="shards", val_fraction=0.2, test_fraction=0.1,
            shards={"max_images_per_shard": 20, "shuffle_buffer": 16, "workers": 0},
        )  # fmt: skip
        return build_sharded_dataset(config, str(root))
    finally:
        sharded.read_source = original


def test_gan_trains_at_64_px_from_a_stream(shards: ShardedDataset, tmp_path: Path) -> None:
    assert shards.image_shape == (64, 64, 3) and len(shards.manifest.splits["train"].shards) > 1
    config = GanTrainConfig(
        architecture={"image_size": 64, "channels": 3, "latent_dim": 8, "g_width": 8, "d_width": 8},
        steps=6, batch_size=16, device="cpu", progress=False, log_every=2, checkpoint_every=3,
    )  # fmt: skip
    result = GanTrainer(config, shards.streamed("train"), tmp_path).fit()
    assert result.steps == 6 and len(result.history) == 3
    assert all(np.isfinite(h["d_loss"]) for h in result.history)
    # the same run again resumes its checkpoint (a stream is restarted at the epoch reached)
    assert GanTrainer(config, shards.streamed("train"), tmp_path).fit().resumed_from == 6


def test_classifier_fits_from_a_stream(shards: ShardedDataset) -> None:
    from models.gan.networks import GanArchitecture

    arch = GanArchitecture(image_size=64, channels=3, latent_dim=8, g_width=8, d_width=8)
    config = ClassifierConfig(
        init="scratch", epochs=2, batch_size=16, hidden=16, feature_pool=2, device="cpu",
        label_fraction=0.5, augment=False,
    )  # fmt: skip
    result = fit_classifier(
        config, arch, shards.hierarchy, shards.streamed("train"), None, *shards.split("val")
    )
    counts = shards.class_counts("train")
    assert len(result.labelled_indices) == sum(max(1, round(c * 0.5)) for c in counts)
    assert len(result.history) == 2 and "val_fine_accuracy" in result.history[-1]
