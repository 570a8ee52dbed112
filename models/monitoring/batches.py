"""Read a batch of images for the drift monitor: a folder, an ``.npz``, or the request log.

Every reader returns uint8 ``[N, H, W, C]`` at the model's size and channels: folder images of
any format, mode or size are converted and resized as in training (:mod:`models.data.images`);
files that cannot be used are skipped and listed with the reason, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.data.dataset import SkippedFile
from models.data.images import IMAGE_SUFFIXES, decode_files, visible_files
from models.monitoring.request_store import is_request_store, read_store

NPZ_KEY = "images"


class BatchError(ValueError):
    """A batch that cannot be read; the message names the path and what was wrong."""


@dataclass
class ImageBatch:
    """Images to monitor, where they came from, and what was left out.

    Attributes:
        images: uint8 ``[N, H, W, C]``.
        source: the path that was read.
        kind: ``folder``, ``npz`` or ``request-log``.
        skipped: files of a folder that could not be used, with the reason.
        records: the request log's records (time and the service's answer), if any.
    """

    images: np.ndarray
    source: str
    kind: Literal["folder", "npz", "request-log"]
    skipped: list[SkippedFile] = field(default_factory=list)
    records: list[dict[str, Any]] | None = None

    def facts(self) -> dict[str, Any]:
        """Counts for logs and metadata."""
        return {
            "source": self.source,
            "kind": self.kind,
            "num_images": int(len(self.images)),
            "image_shape": list(self.images.shape[1:]),
            "num_skipped_files": len(self.skipped),
            "skipped_examples": [f"{s.path}: {s.reason}" for s in self.skipped[:10]],
        }


def read_batch(path: str | Path, image_size: int, channels: int, workers: int = 4) -> ImageBatch:
    """Read a folder of images, an ``.npz`` (key ``images``) or a request-log directory.

    Raises:
        BatchError: missing path, unknown kind, no usable image, or wrong shape.
    """
    path = Path(path)
    if not path.exists():
        raise BatchError(f"batch {path} does not exist")
    if path.is_dir() and is_request_store(path):
        return read_request_log_batch(path, image_size, channels)
    if path.is_dir():
        return read_folder_batch(path, image_size, channels, workers)
    if path.suffix.lower() == ".npz":
        return read_npz_batch(path, image_size, channels)
    raise BatchError(
        f"batch {path}: expected a folder of images, an .npz file or a request-log directory"
    )


def read_folder_batch(
    root: str | Path, image_size: int, channels: int, workers: int = 4
) -> ImageBatch:
    """Every image file under ``root`` (recursively; hidden files ignored), sorted by path."""
    root = Path(root)
    candidates: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in visible_files(root):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            candidates.append(path)
        else:
            rel = str(path.relative_to(root))
            skipped.append(SkippedFile(rel, f"not an image file (suffix {path.suffix!r})"))
    images = []
    for path, result in zip(
        candidates, decode_files(candidates, image_size, channels, workers), strict=True
    ):
        if isinstance(result, str):
            skipped.append(SkippedFile(str(path.relative_to(root)), result))
        else:
            images.append(result)
    if not images:
        raise BatchError(f"batch {root}: no readable images ({len(skipped)} files skipped)")
    return ImageBatch(np.stack(images), str(root), "folder", skipped)


def read_npz_batch(path: str | Path, image_size: int, channels: int) -> ImageBatch:
    """``images`` of an ``.npz``: uint8 ``[N, H, W]`` or ``[N, H, W, C]`` at the model's shape."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if NPZ_KEY not in npz.files:
                raise BatchError(f"batch {path}: no array {NPZ_KEY!r} (found {npz.files})")
            images = npz[NPZ_KEY]
    except BatchError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise BatchError(f"batch {path}: not a readable .npz ({err})") from err
    return ImageBatch(_checked(images, image_size, channels, str(path)), str(path), "npz")


def read_request_log_batch(directory: str | Path, image_size: int, channels: int) -> ImageBatch:
    """The request log's images (oldest first) with its records."""
    try:
        images, records = read_store(directory)
    except ValueError as err:
        raise BatchError(str(err)) from err
    return ImageBatch(
        _checked(images, image_size, channels, str(directory)),
        str(directory),
        "request-log",
        records=records,
    )


def _checked(images: np.ndarray, image_size: int, channels: int, where: str) -> np.ndarray:
    if images.ndim == 3 and channels == 1:
        images = images[..., None]
    expected = (image_size, image_size, channels)
    if images.dtype != np.uint8:
        raise BatchError(f"batch {where}: images must be uint8, got {images.dtype}")
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise BatchError(
            f"batch {where}: images must be [N, {image_size}, {image_size}, {channels}] "
            f"(the model's input), got {list(images.shape)}"
        )
    if len(images) == 0:
        raise BatchError(f"batch {where}: no images")
    return np.ascontiguousarray(images)
