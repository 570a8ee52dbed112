"""Image decoding: any format, size or mode becomes the model's input; bad files are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.images import ImageDecodeError, decode_image
from tests.toy_models import encode_image


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
    out = decode_image(encode_image(array, fmt, mode), size=28, channels=1)
    assert out.shape == (28, 28, 1) and out.dtype == np.uint8
    rgb = decode_image(encode_image(array, fmt, mode), size=32, channels=3)
    assert rgb.shape == (32, 32, 3)


def test_grayscale_resize_matches_training_decoding(tmp_path: Path) -> None:
    img = np.arange(56 * 56, dtype=np.uint32).reshape(56, 56).astype(np.uint8)
    (tmp_path / "a.png").write_bytes(encode_image(img))
    from_path = decode_image(tmp_path / "a.png", 28, 1)
    from_bytes = decode_image(encode_image(img), 28, 1)
    np.testing.assert_array_equal(from_path, from_bytes)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty file"),
        (b"hello, not an image", "not a recognised image format"),
        (
            encode_image(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))[:500],
            "corrupt or truncated",
        ),
    ],
)
def test_bad_files_name_what_is_wrong(payload: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(payload, 28, 1)


def test_pixel_limit_is_checked_before_decoding() -> None:
    big = encode_image(np.zeros((2000, 2000), np.uint8))
    with pytest.raises(ImageDecodeError, match="4000000 pixels, over the limit of 1000000"):
        decode_image(big, 28, 1, max_pixels=1_000_000)
