"""The dataset artifact: deterministic stratified splits, the content hash, storage, facts."""

from pathlib import Path

import numpy as np
import pytest

from models.data.dataset import DatasetError, LabelledImages, stratified_split
from models.data.ingest import DatasetConfig, build_dataset, subsample_splits
from models.tree.hierarchy import HierarchyError, load_builtin_tree


def toy_dataset(n: int = 100, seed: int = 0) -> LabelledImages:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
    splits = stratified_split(labels, 0.2, 0.2, seed=seed)
    return LabelledImages("toy", images, labels, load_builtin_tree("fashion-mnist"), splits)


def test_stratified_split_is_deterministic_disjoint_and_stratified() -> None:
    labels = np.repeat(np.arange(5), 40)
    a = stratified_split(labels, 0.1, 0.2, seed=3)
    b = stratified_split(labels, 0.1, 0.2, seed=3)
    c = stratified_split(labels, 0.1, 0.2, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["val"], c["val"])
    all_idx = np.concatenate(list(a.values()))
    assert sorted(all_idx) == list(range(200))
    for k, per_class in (("train", 28), ("val", 4), ("test", 8)):
        np.testing.assert_array_equal(np.bincount(labels[a[k]]), [per_class] * 5)


def test_split_respects_official_test_set() -> None:
    labels = np.arange(100) % 4
    mask = np.zeros(100, bool)
    mask[80:] = True
    s = stratified_split(labels, 0.25, 0.5, seed=0, test_mask=mask)
    np.testing.assert_array_equal(s["test"], np.arange(80, 100))
    assert len(s["val"]) == 20 and len(s["train"]) == 60


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(DatasetError, match="sum below 1"):
        stratified_split(np.zeros(10), 0.6, 0.5, seed=0)


def test_save_load_round_trip_and_hash(tmp_path: Path) -> None:
    data = toy_dataset()
    data.save(tmp_path)
    loaded = LabelledImages.load(tmp_path)
    assert loaded.content_hash == data.content_hash
    np.testing.assert_array_equal(loaded.images, data.images)
    assert loaded.hierarchy == data.hierarchy
    assert toy_dataset().content_hash == data.content_hash  # deterministic
    assert toy_dataset(seed=1).content_hash != data.content_hash


def test_load_detects_tampering(tmp_path: Path) -> None:
    data = toy_dataset()
    data.images[0, 0, 0, 0] ^= 1
    data.save(tmp_path)
    meta = (tmp_path / "dataset.json").read_text()
    data.images[0, 0, 0, 0] ^= 1
    data.__dict__.pop("content_hash", None)
    data.save(tmp_path)  # arrays of the original ...
    (tmp_path / "dataset.json").write_text(meta)  # ... with the hash of the modified copy
    with pytest.raises(DatasetError, match="does not match its recorded hash"):
        LabelledImages.load(tmp_path)


def test_load_refuses_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read dataset"):
        LabelledImages.load(tmp_path)


def test_invalid_datasets_are_named() -> None:
    tree = load_builtin_tree("fashion-mnist")
    ok = {"train": np.arange(4), "val": np.zeros(0, int), "test": np.zeros(0, int)}
    with pytest.raises(DatasetError, match="must be uint8"):
        LabelledImages("x", np.zeros((4, 2, 2, 1), np.float32), np.zeros(4), tree, ok)
    with pytest.raises(DatasetError, match=r"\[N, H, W, C\]"):
        LabelledImages("x", np.zeros((4, 2, 2), np.uint8), np.zeros(4), tree, ok)
    with pytest.raises(HierarchyError, match=r"outside the tree.*#2=11"):
        LabelledImages("x", np.zeros((4, 2, 2, 1), np.uint8), np.array([0, 1, 11, 2]), tree, ok)
    overlapping = {"train": np.arange(4), "val": np.array([1]), "test": np.zeros(0, int)}
    with pytest.raises(DatasetError, match="'val' overlaps"):
        LabelledImages("x", np.zeros((4, 2, 2, 1), np.uint8), np.zeros(4), tree, overlapping)


def test_facts_count_every_level() -> None:
    data = toy_dataset()
    facts = data.facts()
    train = facts["splits"]["train"]
    assert train["count"] == len(data.splits["train"])
    assert sum(train["per_level"]["item"].values()) == train["count"]
    assert set(train["per_level"]["category"]) == {"Clothes", "Goods"}
    assert sum(facts["splits"][s]["count"] for s in ("train", "val", "test")) == 100


def test_subsample_keeps_classes_in_proportion() -> None:
    labels = np.repeat(np.arange(4), 100)
    splits = {"train": np.arange(400), "val": np.zeros(0, int), "test": np.zeros(0, int)}
    out = subsample_splits(labels, splits, {"train": 40}, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[out["train"]]), [10, 10, 10, 10])


def test_build_dataset_from_fashion_like_files(fashion_like_dir: Path) -> None:
    cfg = DatasetConfig(data_dir=str(fashion_like_dir), val_fraction=0.2, allow_download=False)
    data = build_dataset(cfg)
    assert data.images.shape == (250, 28, 28, 1)
    assert len(data.splits["test"]) == 50  # the official test part
    assert len(data.splits["val"]) == 40
    sub = build_dataset(cfg.model_copy(update={"subsample": {"train": 50, "test": 20}}))
    assert len(sub.splits["train"]) == 50 and len(sub.splits["test"]) == 20
    assert len(sub.images) == 50 + 40 + 20


def test_build_real_fashion_mnist_slice(real_fashion_mnist_dir: Path) -> None:
    cfg = DatasetConfig(
        data_dir=str(real_fashion_mnist_dir), subsample={"train": 500, "val": 100, "test": 100}
    )
    data = build_dataset(cfg)
    assert data.image_shape == (28, 28, 1)
    assert data.hierarchy.name == "fashion-mnist"
    assert set(np.unique(data.labels[data.splits["train"]])) == set(range(10))
    facts = data.facts()
    assert facts["splits"]["test"]["count"] == 100
