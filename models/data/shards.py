"""Writing a dataset as tar shards plus a manifest, into a local folder or object storage.

Layout under the dataset's folder (``<root>/<name>-<key>/``)::

    manifest.json             counts per split and class, the tree, image size, every shard's
                              size and SHA-256, the skipped files, and the content hash
    train-000000.tar ...      WebDataset shards: <key>.<ext> (the encoded image), <key>.cls
    val-000000.tar ...        (leaf label), <key>.ord (the image's ordinal within its class
    test-000000.tar ...       and split, for stratified labelled subsets), <key>.src (the
                              file it came from, or its index in an in-memory source)

Images are stored encoded: an image folder's files as they are (JPEG bytes are copied, not
decoded: decoding and resizing happen in the loader workers), in-memory sources as PNG. Each
split is written in a seeded random order, so the shards are shuffled once and for all and a
stream's first images are a random sample. The content hash covers the manifest, hence every
shard's SHA-256: what every later artifact cites, and what caching keys on.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.data.dataset import SPLITS, SkippedFile

FORMAT = "hiergan-shards/1"
MANIFEST_FILE = "manifest.json"


class ShardInfo(BaseModel):
    """One shard file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    count: int = Field(ge=0)
    bytes: int = Field(ge=0)
    sha256: str


class SplitInfo(BaseModel):
    """One split: how many images, per leaf class, and in which shards."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=0)
    class_counts: list[int]
    shards: list[ShardInfo]


class Manifest(BaseModel):
    """What a sharded dataset holds; ``content_hash`` is the SHA-256 of everything else."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["hiergan-shards/1"] = FORMAT
    name: str
    source: str
    image_size: int = Field(ge=8)
    channels: Literal[1, 3]
    hierarchy: dict
    class_ids: list[str]
    splits: dict[str, SplitInfo]
    skipped: list[dict[str, str]] = Field(default_factory=list)
    content_hash: str = ""

    def expected_hash(self) -> str:
        """SHA-256 of the canonical JSON of every field but ``content_hash``."""
        blob = json.dumps(
            self.model_dump(mode="json", exclude={"content_hash"}),
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()


# A function that returns one image's encoded bytes and file extension.
Payload = Callable[[int], tuple[bytes, str]]


def png_payload(images: np.ndarray) -> Payload:
    """Images of an ``[N, H, W, C]`` uint8 array as PNG bytes (lossless)."""
    from PIL import Image

    def encode(i: int) -> tuple[bytes, str]:
        img = images[i]
        buf = io.BytesIO()
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(
            buf, "PNG", compress_level=1
        )
        return buf.getvalue(), "png"

    return encode


def file_payload(paths: list) -> Payload:
    """Image files as they are: bytes and their lower-case suffix (``JPEG`` -> ``jpeg``)."""

    def read(i: int) -> tuple[bytes, str]:
        path = paths[i]
        with open(path, "rb") as fh:
            data = fh.read()
        ext = path.suffix.lower().lstrip(".")
        return data, "jpg" if ext == "jpeg" else ext

    return read


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, raw: object) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)  # type: ignore[attr-defined]

    def flush(self) -> None:
        self.raw.flush()  # type: ignore[attr-defined]


def write_split(
    fs: object,
    folder: str,
    split: str,
    indices: np.ndarray,
    labels: np.ndarray,
    payload: Payload,
    num_classes: int,
    seed: int,
    max_count: int,
    max_bytes: int,
    skipped: list[SkippedFile] | None = None,
    describe: Callable[[int], str] | None = None,
) -> SplitInfo:
    """Write one split's images as shards ``<split>-NNNNNN.tar`` in a seeded random order.

    Images whose payload cannot be read (an unreadable file) are added to ``skipped``.

    Returns:
        The split's entry of the manifest.
    """
    from webdataset import TarWriter

    order = [int(i) for i in indices]
    random.Random(f"{seed}:{split}").shuffle(order)
    ordinal = np.zeros(num_classes, dtype=np.int64)
    shards: list[ShardInfo] = []
    state: dict = {"writer": None}

    def close() -> None:
        if state["writer"] is None:
            return
        state["writer"].close()
        state["fh"].close()
        sink = state["sink"]
        shards.append(
            ShardInfo(
                name=state["name"],
                count=state["count"],
                bytes=sink.size,
                sha256=sink.sha.hexdigest(),
            )
        )
        state["writer"] = None

    for i in order:
        try:
            data, ext = payload(i)
        except OSError as err:
            if skipped is not None:
                where = describe(i) if describe else f"#{i}"
                skipped.append(SkippedFile(where, f"unreadable file ({err})"))
            continue
        if (
            state["writer"] is None
            or state["count"] >= max_count
            or state["sink"].size >= max_bytes
        ):
            close()
            name = f"{split}-{len(shards):06d}.tar"
            fh = fs.open(f"{folder}/{name}", "wb")  # type: ignore[attr-defined]
            sink = _HashingWriter(fh)
            # mtime 0 and fixed owners: the same images give byte-identical shards
            state.update(fh=fh, sink=sink, name=name, count=0, writer=TarWriter(sink, mtime=0.0))
        label = int(labels[i])
        key = f"{split}{sum(s.count for s in shards) + state['count']:09d}"
        source = describe(i) if describe else f"#{i}"
        state["writer"].write(
            {
                "__key__": key,
                ext: data,
                "cls": str(label),
                "ord": str(int(ordinal[label])),
                "src": source,
            }
        )
        ordinal[label] += 1
        state["count"] += 1
    close()
    return SplitInfo(count=int(ordinal.sum()), class_counts=ordinal.tolist(), shards=shards)


def write_manifest(fs: object, folder: str, manifest: Manifest) -> Manifest:
    """Stamp the content hash and write ``manifest.json`` (after every shard is complete)."""
    manifest = manifest.model_copy(update={"content_hash": manifest.expected_hash()})
    with fs.open(f"{folder}/{MANIFEST_FILE}", "w") as fh:  # type: ignore[attr-defined]
        fh.write(manifest.model_dump_json(indent=1))
    return manifest


def write_dataset(
    uri: str,
    *,
    name: str,
    source: str,
    labels: np.ndarray,
    splits: dict[str, np.ndarray],
    payload: Payload,
    hierarchy: dict,
    class_ids: Iterable[str],
    image_size: int,
    channels: int,
    seed: int,
    max_count: int,
    max_bytes: int,
    skipped: list[SkippedFile],
    describe: Callable[[int], str] | None = None,
) -> Manifest:
    """Write every split's shards, then the manifest, into the folder ``uri``.

    Returns:
        The manifest, content hash stamped.
    """
    import fsspec

    fs, folder = fsspec.core.url_to_fs(uri)
    fs.makedirs(folder, exist_ok=True)
    class_ids = list(class_ids)
    written = {
        split: write_split(
            fs, folder, split, splits[split], labels, payload, len(class_ids), seed,
            max_count, max_bytes, skipped, describe,
        )
        for split in SPLITS
    }  # fmt: skip
    manifest = Manifest(
        name=name,
        source=source,
        image_size=image_size,
        channels=channels,  # type: ignore[arg-type]
        hierarchy=hierarchy,
        class_ids=class_ids,
        splits=written,
        skipped=[s.__dict__ for s in skipped],
    )
    return write_manifest(fs, folder, manifest)
