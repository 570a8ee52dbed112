"""The service's pieces called directly: image decoding, input checks, the service class."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from models.hierarchy import load_builtin_tree
from models.images import ImageDecodeError, decode_image
from models.prediction import InputShapeError, Predictor
from tests.toy_models import train_tiny_classifier


def _png(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("array", "fmt", "mode"),
    [
        (np.full((28, 28), 200, np.uint8), "PNG", None),
        (np.full((300, 120, 3), 90, np.uint8), "JPEG", None),
        (np.full((64, 64, 3), 10, np.uint8), "WEBP", None),
        (np.full((40, 40, 3), 10, np.uint8), "PNG", "P"),
        (np.full((40, 40, 4), 10, np.uint8), "PNG", "RGBA"),
        (np.full((16, 16), 1, np.uint8), "PNG", "1"),
    ],
)
def test_any_format_size_or_mode_becomes_model_input(array, fmt, mode) -> None:
    out = decode_image(_png(array, fmt, mode), size=28, channels=1)
    assert out.shape == (28, 28, 1) and out.dtype == np.uint8
    rgb = decode_image(_png(array, fmt, mode), size=32, channels=3)
    assert rgb.shape == (32, 32, 3)


def test_grayscale_resize_matches_training_decoding(tmp_path: Path) -> None:
    img = np.arange(56 * 56, dtype=np.uint32).reshape(56, 56).astype(np.uint8)
    (tmp_path / "a.png").write_bytes(_png(img))
    from_path = decode_image(tmp_path / "a.png", 28, 1)
    from_bytes = decode_image(_png(img), 28, 1)
    np.testing.assert_array_equal(from_path, from_bytes)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty file"),
        (b"hello, not an image", "not a recognised image format"),
        (
            _png(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))[:500],
            "corrupt or truncated",
        ),
    ],
)
def test_bad_files_name_what_is_wrong(payload: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(payload, 28, 1)


def test_pixel_limit_is_checked_before_decoding() -> None:
    big = _png(np.zeros((2000, 2000), np.uint8))
    with pytest.raises(ImageDecodeError, match="4000000 pixels, over the limit of 1000000"):
        decode_image(big, 28, 1, max_pixels=1_000_000)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 28, 27, 1), np.uint8), r"expected shape \[N, 28, 28, 1\]"),
        (np.zeros((0, 28, 28, 1), np.uint8), "no images"),
        (np.full((1, 28, 28), 256.0), r"in \[0, 255\]"),
        (np.full((1, 28, 28), -1), r"in \[0, 255\]"),
        (np.full((1, 28, 28), 0.5), "whole numbers"),
        (np.full((1, 28, 28), np.nan), r"in \[0, 255\]"),
        (np.full((1, 28, 28), "a"), "expected numbers"),
    ],
)
def test_array_checks_name_the_problem(images, message: str) -> None:
    with pytest.raises(InputShapeError, match=message):
        Predictor.check_shape(images, (28, 28, 1))


def test_array_checks_add_missing_axes() -> None:
    one = Predictor.check_shape(np.zeros((28, 28), np.int64), (28, 28, 1))
    assert one.shape == (1, 28, 28, 1) and one.dtype == np.uint8
    assert Predictor.check_shape(np.zeros((3, 28, 28)), (28, 28, 1)).shape == (3, 28, 28, 1)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = load_builtin_tree("fashion_mnist")
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 10
    images = np.clip(
        40 + 15 * labels[:, None, None, None] + rng.integers(0, 60, (100, 28, 28, 1)), 0, 255
    ).astype(np.uint8)
    model = train_tiny_classifier(tree, images, labels, epochs=2, info={"dataset_hash": "toy"})
    model.temperatures = [1.2, 1.1, 0.9]
    path = tmp_path_factory.mktemp("model")
    model.save(path)
    return path


@pytest.fixture
def service(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HIERGAN_MODEL_DIR", str(tiny_model_dir))
    from serving.service import HierganService

    return HierganService()


def test_service_answers_path_leaf_and_top_k(service, tmp_path: Path) -> None:
    files = []
    for i, (size, mode) in enumerate([((28, 28), "L"), ((500, 300), "RGB")]):
        path = tmp_path / f"img{i}.png"
        Image.new(mode, size, 128).save(path)
        files.append(path)
    ctx = SimpleNamespace(response=SimpleNamespace(status_code=200))
    answer = service.classify(files, ctx=ctx, top_k=5)
    assert ctx.response.status_code == 200
    predictions = answer["predictions"]
    assert [p["input"] for p in predictions] == ["images[0]", "images[1]"]
    tree = service.predictor.tree
    for p in predictions:
        assert [step["level"] for step in p["path"]] == list(tree.level_names)
        assert p["path"][-1]["label"] == p["leaf"] == tree.leaves[p["leaf_index"]]
        # coarser levels are at least as likely as the leaf under them
        probs = [step["probability"] for step in p["path"]]
        assert all(a >= b - 1e-6 for a, b in zip(probs, probs[1:], strict=False))
        assert len(p["top_k"]) == 5 and p["top_k"][0]["label"] == p["leaf"]
        assert sum(t["probability"] for t in p["top_k"]) <= 1 + 1e-5


def test_service_refuses_bad_files_with_400(service, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ctx = SimpleNamespace(response=SimpleNamespace(status_code=200))
    answer = service.classify([bad], ctx=ctx)
    assert ctx.response.status_code == 400 and answer["error"].startswith("images[0]: ")
    ctx.response.status_code = 200
    assert "top_k must be between 1 and" in service.classify([bad], ctx=ctx, top_k=0)["error"]


def test_array_endpoint_matches_file_endpoint(service, tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    ctx = SimpleNamespace(response=SimpleNamespace(status_code=200))
    from_file = service.classify([path], ctx=ctx)["predictions"][0]
    from_array = service.classify_array(array[None, :, :, None])[0]
    assert from_file["top_k"] == from_array["top_k"]
    assert service.model_info()["levels"] == ["category", "group", "item"]


def test_request_log_records_what_the_model_saw(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIERGAN_MODEL_DIR", str(tiny_model_dir))
    import serving.service as service_module
    from serving.request_log import RequestLogConfig, read_request_log

    config = RequestLogConfig(enabled=True, directory=str(tmp_path / "log"), shard_records=1)
    monkeypatch.setattr(service_module.CONFIG, "request_log", config)
    service = service_module.HierganService()
    array = np.random.default_rng(2).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    answers = service.classify_array(array)
    service.request_log.flush()
    images, records = read_request_log(tmp_path / "log")
    np.testing.assert_array_equal(images, array)
    assert [r["prediction"]["leaf"] for r in records] == [a["leaf"] for a in answers]
