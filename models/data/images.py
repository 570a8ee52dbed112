"""Turning an image file of any format, size or mode into the model's uint8 input.

Training (image folders) and serving (uploaded files) share this, so an image is converted and
resized the same way wherever it comes from.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class ImageDecodeError(ValueError):
    """An input that is not a usable image; the message says what was wrong."""


def to_model_array(img: object, size: int, channels: int) -> np.ndarray:
    """A decoded PIL image as uint8 ``[size, size, channels]``.

    Palette and alpha images are flattened through RGBA first so that transparency is honoured;
    resizing is bilinear, as in training.
    """
    from PIL import Image

    assert isinstance(img, Image.Image)
    mode = "L" if channels == 1 else "RGB"
    if img.mode in ("RGBA", "LA", "P") and mode == "RGB":
        img = img.convert("RGBA")
    img = img.convert(mode)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(size, size, channels)


def decode_image(
    source: str | Path | bytes | BinaryIO,
    size: int,
    channels: int,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode one image (path, bytes or file object) to uint8 ``[size, size, channels]``.

    Args:
        source: the encoded image.
        size: output height and width.
        channels: 1 (grayscale) or 3 (RGB).
        max_pixels: refuse images with more pixels than this, read from the header before any
            pixel is decoded (a decompression bomb never reaches memory).

    Raises:
        ImageDecodeError: empty, not an image, truncated, or too large.
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if isinstance(source, bytes):
        if not source:
            raise ImageDecodeError("empty file (0 bytes)")
        source = io.BytesIO(source)
    try:
        with Image.open(source) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageDecodeError(
                    f"image is {width}x{height} = {width * height} pixels, "
                    f"over the limit of {max_pixels}"
                )
            img.load()  # decode now, so that a truncated file fails here
            return to_model_array(img, size, channels)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format") from None
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"image too large: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for damaged data
        raise ImageDecodeError(f"corrupt or truncated image ({err})") from None


def visible_files(root: Path) -> list[Path]:
    """Files under ``root``, recursively and sorted by path; hidden files and folders left out.

    ``.DS_Store`` or a ``.git`` folder are not data.
    """
    return [
        path
        for path in sorted(p for p in root.rglob("*") if p.is_file())
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]


def decode_files(
    paths: Sequence[Path], size: int, channels: int, workers: int = 4
) -> list[np.ndarray | str]:
    """Decode image files in a thread pool (PIL releases the GIL while decoding).

    Returns:
        Per path, in order: uint8 ``[size, size, channels]``, or why the file is unusable.
    """

    def decode(path: Path) -> np.ndarray | str:
        try:
            return decode_image(path, size, channels)
        except Exception as err:  # noqa: BLE001 - PIL raises many types; every one means "skip"
            return f"unreadable image ({type(err).__name__}: {err})"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(decode, paths))
