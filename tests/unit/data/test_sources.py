"""Source readers: IDX files, Fashion-MNIST (Debian copy or download), CIFAR, image folders."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import models.data.sources as sources
from models.data.dataset import DatasetError
from models.data.ingest import DatasetConfig, build_dataset
from models.tree.hierarchy import Hierarchy, HierarchyError
from tests.conftest import write_idx


def test_read_idx_plain_and_gz(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", arr)
    write_idx(tmp_path / "a.gz", arr)
    np.testing.assert_array_equal(sources.read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(sources.read_idx(tmp_path / "a.gz"), arr)


def test_read_idx_names_corrupt_files(tmp_path: Path) -> None:
    write_idx(tmp_path / "t", np.zeros((4, 5), np.uint8))
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-3])
    with pytest.raises(DatasetError, match=r"t: 29 bytes, expected 32 for shape \(4, 5\)"):
        sources.read_idx(tmp_path / "t")
    (tmp_path / "m").write_bytes(b"\x89PNG....")
    with pytest.raises(DatasetError, match="bad magic"):
        sources.read_idx(tmp_path / "m")
    (tmp_path / "g.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="cannot read"):
        sources.read_idx(tmp_path / "g.gz")


def test_fashion_mnist_reader(fashion_like_dir: Path) -> None:
    src = sources.read_fashion_mnist(fashion_like_dir, allow_download=False)
    assert src.images.shape == (250, 28, 28, 1) and src.images.dtype == np.uint8
    assert src.test_mask.sum() == 50 and src.test_mask[-50:].all()
    assert src.hierarchy.leaves[src.labels[3]] == "Dress"


def test_fetch_copies_debian_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deb = tmp_path / "deb"
    deb.mkdir()
    for stem in sources.FASHION_MNIST_FILES.values():
        write_idx(deb / f"{stem}.gz", np.zeros((2, 28, 28) if "images" in stem else (2,), np.uint8))
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", deb)
    raw = sources.fetch_fashion_mnist(tmp_path / "data", allow_download=False)
    assert sorted(p.name for p in raw.iterdir()) == sorted(sources.FASHION_MNIST_FILES.values())
    assert sources.read_idx(raw / "train-labels-idx1-ubyte").shape == (2,)


def test_fetch_explains_how_to_provide_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        sources.fetch_fashion_mnist(tmp_path / "data", allow_download=False)
    assert sources.main(["fetch-fashion-mnist", "--data-dir", str(tmp_path), "--no-download"]) == 2


def _png(path: Path, size: tuple[int, int], mode: str = "RGB", value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new(mode, size, value if mode in ("L", "P") else (value,) * len(mode))
    img.save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    _png(root / "clothes" / "shirt" / "a.png", (40, 30), "RGB", 10)
    _png(root / "clothes" / "shirt" / "b.png", (16, 16), "L", 20)
    _png(root / "clothes" / "pants" / "c.png", (50, 50), "RGBA", 30)
    _png(root / "clothes" / "pants" / "d.png", (8, 8), "P", 3)
    _png(root / "goods" / "bag" / "e.png", (32, 32), "RGB", 40)
    Image.new("RGB", (20, 20), (1, 2, 3)).save(root / "goods" / "bag" / "f.jpg")
    (root / "goods" / "bag" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (root / "goods" / "bag" / "notes.txt").write_text("not an image")
    (root / "goods" / "README.md").write_text("stray")
    (root / "goods" / "bag" / ".DS_Store").write_bytes(b"\x00")
    return root


def test_image_folder_reads_converts_and_lists_skipped(folder: Path) -> None:
    src = sources.read_image_folder(folder, image_size=24, channels=3)
    assert src.images.shape == (6, 24, 24, 3)
    assert src.hierarchy.paths == (("clothes", "pants"), ("clothes", "shirt"), ("goods", "bag"))
    np.testing.assert_array_equal(np.bincount(src.labels), [2, 2, 2])
    reasons = {s.path: s.reason for s in src.skipped}
    assert reasons.keys() == {"goods/bag/broken.png", "goods/bag/notes.txt", "goods/README.md"}
    assert reasons["goods/bag/broken.png"].startswith("unreadable image")
    assert "not an image file" in reasons["goods/bag/notes.txt"]
    assert reasons["goods/README.md"] == "not inside a leaf folder"
    gray = sources.read_image_folder(folder, image_size=16, channels=1)
    assert gray.images.shape == (6, 16, 16, 1)


def test_image_folder_dataset_carries_skipped_files(folder: Path) -> None:
    data = build_dataset(
        DatasetConfig(
            source="image-folder",
            data_dir=str(folder),
            image_size=16,
            channels=1,
            val_fraction=0.0,
            test_fraction=0.0,
        )
    )
    assert data.name == "shop" and len(data.skipped) == 3
    assert data.source.startswith("image-folder:")


def test_image_folder_against_a_given_tree(folder: Path, tmp_path: Path) -> None:
    tree = Hierarchy.from_dict({"tree": {"goods": ["bag"], "clothes": ["shirt", "pants"]}})
    src = sources.read_image_folder(folder, 16, 1, hierarchy=tree)
    assert src.hierarchy is tree
    other = Hierarchy.from_dict({"tree": {"goods": ["bag"], "clothes": ["shirt", "skirt"]}})
    with pytest.raises(HierarchyError, match="'clothes/pants'.*not a leaf path"):
        sources.read_image_folder(folder, 16, 1, hierarchy=other)


def test_image_folder_with_nothing_readable(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"no readable images .*1 files skipped"):
        sources.read_image_folder(tmp_path, 16, 1)


def test_cifar10_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR10

    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)

    def batch(n: int) -> dict:
        return {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": list(np.arange(n) % 10),
        }

    # the test writes torchvision's on-disk format itself; torchvision reads it
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump(batch(20), fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names}, fh)
    # the md5 checks are torchvision's (for the official archive), not what this test is about
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    src = sources.read_cifar("cifar10", tmp_path, allow_download=False)
    assert src.images.shape == (120, 32, 32, 3)
    assert src.test_mask.sum() == 20
    assert src.hierarchy.path_names(int(src.labels[9])) == ("vehicles", "truck")


def test_cifar_missing_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cifar100 not found"):
        sources.read_cifar("cifar100", tmp_path, allow_download=False)


def test_fingerprint_changes_with_files(folder: Path) -> None:
    before = sources.source_fingerprint("image-folder", folder)
    assert before == sources.source_fingerprint("image-folder", folder)
    with gzip.open(folder / "goods" / "bag" / "new.png.gz", "wb") as fh:
        fh.write(b"x")
    assert sources.source_fingerprint("image-folder", folder) != before
