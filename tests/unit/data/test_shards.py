"""Sharded datasets: ImageNet-style folders to shards + manifest, streamed back; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data.dataset import DatasetError
from models.data.ingest import DatasetConfig, build_dataset
from models.data.sharded import ShardedDataset, build_sharded_dataset
from models.data.streaming import ShardError, make_loader
from models.runtime.distributed import Dist
from models.tree.wordnet import WordNetError
from tests.imagenet_like import WNIDS, make_imagenet_like


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory) -> Path:
    return make_imagenet_like(tmp_path_factory.mktemp("inet"), per_class=12, val_per_class=3)


def config(data_dir: Path, **extra) -> DatasetConfig:
    options = {
        "source": "imagenet-folder",
        "data_dir": str(data_dir),
        "image_size": 32,
        "channels": 3,
        "storage": "shards",
        "val_fraction": 0.25,
        "shards": {"max_images_per_shard": 16, "shuffle_buffer": 8, "workers": 0},
    }
    return DatasetConfig(**(options | extra))


@pytest.fixture(scope="module")
def sharded(imagenet_dir, tmp_path_factory) -> ShardedDataset:
    return build_sharded_dataset(config(imagenet_dir), str(tmp_path_factory.mktemp("store")))


def test_folder_becomes_shards_and_a_manifest(sharded, imagenet_dir):
    m = sharded.manifest
    assert m.class_ids == sorted(WNIDS)
    assert {s: sharded.count(s) for s in ("train", "val", "test")} == {
        "train": 63, "val": 21, "test": 21,
    }  # fmt: skip
    assert sharded.class_counts("test").tolist() == [3] * len(WNIDS)
    assert len(m.splits["train"].shards) == 4  # 63 images, 16 per shard
    assert sharded.image_shape == (32, 32, 3)
    assert m.content_hash == m.expected_hash()
    # the same config and files reuse the folder (no rewrite), a reopened artifact is equal
    again = build_sharded_dataset(config(imagenet_dir), sharded.uri.rsplit("/", 1)[0])
    assert again.uri == sharded.uri and again.content_hash == sharded.content_hash
    facts = sharded.facts()
    assert facts["num_images"] == 105 and facts["splits"]["test"]["count"] == 21


def test_streamed_split_equals_in_memory_split(sharded, imagenet_dir):
    memory = build_dataset(config(imagenet_dir, storage="memory"))
    x_mem, y_mem = memory.split("test")
    x, y = sharded.split("test")
    # same images (decoded the same way), in another order: compare as sorted multisets
    key = lambda xs, ys: sorted((int(c), xi.tobytes()) for xi, c in zip(xs, ys, strict=True))  # noqa: E731
    assert key(x, y) == key(x_mem, y_mem)


def test_ranks_and_workers_read_disjoint_shares(sharded):
    seen = []
    for rank in (0, 1):
        spec = sharded.stream_spec("train", 5, rank=rank, world_size=2, seed=3)
        for batch in make_loader(spec, workers=2):
            seen += batch.labels.tolist()
    assert len(seen) == sharded.count("train")
    assert np.bincount(seen).tolist() == sharded.class_counts("train").tolist()


def test_stratified_labelled_share_and_endless_stream(sharded):
    stream = sharded.streamed("train")
    n = stream.start(local_batch=4, seed=0, dist=Dist(), label_fraction=0.5)
    assert n == sum(max(1, round(c * 0.5)) for c in sharded.class_counts("train"))
    labels = torch.cat([stream.next_batch(torch.device("cpu"))[1] for _ in range(40)])
    assert len(labels) == 160  # more than one pass: the stream repeats epochs


def test_corrupt_image_in_a_shard_is_skipped_and_named(imagenet_dir, tmp_path):
    broken = tmp_path / "broken"
    make_imagenet_like(broken, per_class=4, val_per_class=1, wnids=WNIDS[:3])
    bad = broken / "train" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:150])
    data = build_sharded_dataset(config(broken, val_fraction=0.0), str(tmp_path / "store"))
    spec = data.stream_spec("train", 100)
    (batch,) = list(make_loader(spec, workers=0))
    assert len(batch.labels) == data.count("train") - 1  # the epoch went on without it
    (skip,) = batch.skipped
    assert skip["source"] == f"train/{WNIDS[0]}/{bad.name}" and "corrupt" in skip["reason"]
    from models.validation.streamed import streamed_summary

    summary, failed = streamed_summary(data)
    assert len(summary) == 14 and len(failed) == 1 and bad.name in failed[0].path


def test_manifest_or_shard_that_does_not_match_fails_naming_it(sharded, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sharded.uri, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["test"]["class_counts"][0] += 1  # edited by hand
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"manifest .*copy/manifest.json does not match"):
        ShardedDataset.open(str(copy))

    shutil.rmtree(copy)
    shutil.copytree(sharded.uri, copy)
    shard = copy / "test-000000.tar"
    raw = bytearray(shard.read_bytes())
    raw[600] ^= 0xFF  # same size, different content: caught while streaming, by SHA-256
    shard.write_bytes(bytes(raw))
    reopened = ShardedDataset.open(str(copy))
    with pytest.raises(ShardError, match="test-000000.tar does not match its manifest"):
        reopened.split("test")
    shard.write_bytes(bytes(raw[:-1024]))  # truncated: caught when opening, by size
    with pytest.raises(ShardError, match="test-000000.tar .*does not match manifest"):
        ShardedDataset.open(str(copy))


def test_bad_folders_fail_naming_what_is_wrong(tmp_path):
    root = make_imagenet_like(tmp_path / "a", per_class=2, val_per_class=1, wnids=WNIDS[:3])
    (root / "train" / "n09999999").mkdir()
    with pytest.raises(WordNetError, match="n09999999"):
        build_dataset(config(root, storage="memory"))
    (root / "train" / "n09999999").rmdir()
    empty = root / "train" / "n02123394"  # Persian cat: in WordNet, but no images
    empty.mkdir()
    (empty / ".DS_Store").write_text("")
    with pytest.raises(DatasetError, match="empty class folder .*n02123394"):
        build_dataset(config(root, storage="memory"))
    with pytest.raises(DatasetError, match=r"no folder for the chosen synset\(s\) \['n02123159'\]"):
        build_dataset(config(root, storage="memory", synsets=[WNIDS[0], "n02123159"]))
