"""Batch readers: image folders (any mode and size, bad files skipped), .npz, the request log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.monitoring.batches import BatchError, read_batch
from serving.request_log import RequestLog


def test_folder_converts_resizes_and_reports_bad_files(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    (root / "sub").mkdir(parents=True)
    Image.new("L", (28, 28), 200).save(root / "a.png")
    Image.new("RGB", (64, 40), (255, 0, 0)).save(root / "sub" / "b.jpg")
    Image.new("RGBA", (10, 10), (0, 0, 255, 255)).save(root / "c.webp")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("hello")
    (root / ".DS_Store").write_bytes(b"\0")
    batch = read_batch(root, image_size=28, channels=1)
    assert batch.kind == "folder"
    assert batch.images.shape == (3, 28, 28, 1) and batch.images.dtype == np.uint8
    assert batch.images[0].min() == batch.images[0].max() == 200  # a.png first (sorted paths)
    skipped = {s.path: s.reason for s in batch.skipped}
    assert set(skipped) == {"broken.png", "notes.txt"}
    assert skipped["broken.png"].startswith("unreadable image")
    assert "not an image file" in skipped["notes.txt"]
    assert batch.facts()["num_skipped_files"] == 2
    rgb = read_batch(root, image_size=32, channels=3)
    assert rgb.images.shape == (3, 32, 32, 3)


def test_folder_without_a_readable_image_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(BatchError, match=r"no readable images \(1 files skipped\)"):
        read_batch(tmp_path, 28, 1)


def test_npz_shapes_and_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "ok.npz", images=np.zeros((5, 28, 28), np.uint8))
    batch = read_batch(tmp_path / "ok.npz", 28, 1)
    assert batch.kind == "npz" and batch.images.shape == (5, 28, 28, 1)
    np.savez(tmp_path / "key.npz", pixels=np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(BatchError, match="no array 'images'"):
        read_batch(tmp_path / "key.npz", 28, 1)
    np.savez(tmp_path / "size.npz", images=np.zeros((5, 32, 32, 3), np.uint8))
    with pytest.raises(BatchError, match=r"must be \[N, 28, 28, 1\] \(the model's input\)"):
        read_batch(tmp_path / "size.npz", 28, 1)
    np.savez(tmp_path / "float.npz", images=np.zeros((5, 28, 28), np.float32))
    with pytest.raises(BatchError, match="must be uint8"):
        read_batch(tmp_path / "float.npz", 28, 1)
    np.savez(tmp_path / "pickled.npz", images=np.array([{"x": 1}], dtype=object))
    with pytest.raises(BatchError, match="not a readable .npz"):
        read_batch(tmp_path / "pickled.npz", 28, 1)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(BatchError, match="not a readable .npz"):
        read_batch(tmp_path / "junk.npz", 28, 1)


def test_request_log_directory_is_recognised(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "log", max_records=100)
    log.record(np.full((3, 28, 28, 1), 7, np.uint8), [{"leaf": "Bag"}] * 3)
    log.flush()
    batch = read_batch(tmp_path / "log", 28, 1)
    assert batch.kind == "request-log" and batch.images.shape == (3, 28, 28, 1)
    assert batch.records is not None and batch.records[0]["prediction"] == {"leaf": "Bag"}


def test_unknown_or_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="does not exist"):
        read_batch(tmp_path / "nope", 28, 1)
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(BatchError, match="expected a folder of images, an .npz file"):
        read_batch(tmp_path / "x.csv", 28, 1)
