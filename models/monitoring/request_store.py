"""On-disk format of the request log: shards of uint8 images (``.npz``) with JSONL records.

A store is a directory holding ``request_log.json`` (the marker) and shard pairs
``shard-<time_ns>-<writer>-<count>.jsonl`` + ``.npz``. The record count is in the name so that a
writer can keep the store bounded without opening any file, and the writer id lets several
processes (service workers) write into one store. Both files are written to a temporary name and
renamed; the ``.npz`` is renamed last, so a shard exists exactly when its ``.npz`` does. Reading
uses ``np.load(allow_pickle=False)`` and ``json``: nothing in a store can execute code.

The recording policy (sampling, buffering, the bound) is :mod:`serving.request_log`'s; this
module is the format, shared with the drift monitor's batch reader.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MARKER_FILE = "request_log.json"
IMAGES_KEY = "images"
_SHARD = re.compile(r"^shard-(\d{20})-([0-9a-f]{8})-(\d+)\.npz$")


class RequestStoreError(ValueError):
    """A request log that cannot be read; the message names the directory or shard."""


@dataclass(frozen=True)
class Shard:
    """One committed shard: its files, when it was written, by which writer, how many records."""

    npz: Path
    time_ns: int
    writer: str
    count: int

    @property
    def jsonl(self) -> Path:
        """The records file beside the images."""
        return self.npz.with_suffix(".jsonl")


def is_request_store(directory: str | Path) -> bool:
    """Whether ``directory`` is a request log (it holds the marker file)."""
    return (Path(directory) / MARKER_FILE).is_file()


def init_store(directory: str | Path) -> Path:
    """Create the directory and its marker if missing; return the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / MARKER_FILE
    if not marker.exists():
        _atomic_write(marker, json.dumps({"format": 1, "kind": "hiergan-request-log"}).encode())
    return directory


def list_shards(directory: str | Path) -> list[Shard]:
    """Committed shards, oldest first (a ``.jsonl`` without its ``.npz`` is not a shard)."""
    shards = []
    for path in Path(directory).iterdir():
        match = _SHARD.match(path.name)
        if match:
            shards.append(Shard(path, int(match[1]), match[2], int(match[3])))
    return sorted(shards, key=lambda s: (s.time_ns, s.writer))


def write_shard(
    directory: str | Path,
    images: np.ndarray,
    records: Sequence[dict[str, Any]],
    writer: str,
    time_ns: int,
) -> Shard:
    """Write one shard atomically (records first, images last: the ``.npz`` commits it)."""
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images but {len(records)} records")
    if not re.fullmatch(r"[0-9a-f]{8}", writer):
        raise ValueError(f"writer id must be 8 hex digits, got {writer!r}")
    directory = Path(directory)
    shard = Shard(
        directory / f"shard-{time_ns:020d}-{writer}-{len(images)}.npz", time_ns, writer, len(images)
    )
    lines = "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in records)
    _atomic_write(shard.jsonl, lines.encode())
    with tempfile.NamedTemporaryFile(
        dir=directory, prefix=".tmp-", suffix=".npz", delete=False
    ) as fh:
        np.savez(fh, **{IMAGES_KEY: np.ascontiguousarray(images, dtype=np.uint8)})
        tmp = fh.name
    os.replace(tmp, shard.npz)
    return shard


def delete_shard(shard: Shard) -> None:
    """Remove a shard (images first, so it stops counting at once); already gone is fine."""
    for path in (shard.npz, shard.jsonl):
        path.unlink(missing_ok=True)


def read_store(directory: str | Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """All committed records, oldest first: ``(uint8 [N, H, W, C] images, records)``.

    Raises:
        RequestStoreError: not a request log, no records, or a shard that is damaged or has a
            different image shape than the others (the message names the shard).
    """
    directory = Path(directory)
    if not is_request_store(directory):
        raise RequestStoreError(f"{directory} is not a request log (no {MARKER_FILE})")
    images: list[np.ndarray] = []
    records: list[dict[str, Any]] = []
    shape: tuple[int, ...] | None = None
    for shard in list_shards(directory):
        try:
            with np.load(shard.npz, allow_pickle=False) as npz:
                arr = npz[IMAGES_KEY]
            lines = shard.jsonl.read_text().splitlines()
            recs = [json.loads(line) for line in lines if line.strip()]
        except FileNotFoundError:
            continue  # deleted by a writer keeping the bound while we read
        except (OSError, ValueError, KeyError) as err:
            raise RequestStoreError(f"damaged request-log shard {shard.npz}: {err}") from err
        if arr.dtype != np.uint8 or arr.ndim != 4 or not len(arr) == shard.count == len(recs):
            raise RequestStoreError(
                f"damaged request-log shard {shard.npz}: {len(arr)} images of {arr.dtype} "
                f"{list(arr.shape)}, {len(recs)} records, name says {shard.count}"
            )
        if shape is not None and arr.shape[1:] != shape:
            raise RequestStoreError(
                f"request-log shard {shard.npz} holds images of shape {list(arr.shape[1:])}, "
                f"earlier shards {list(shape)}"
            )
        shape = arr.shape[1:]
        images.append(arr)
        records.extend(recs)
    if not images:
        raise RequestStoreError(f"request log {directory} holds no records yet")
    return np.concatenate(images), records


def remove_orphans(directory: str | Path, older_than_s: float = 600.0) -> int:
    """Delete temporary files and records without images left by a crashed writer.

    Only files older than ``older_than_s`` go: another writer may be between its two renames.

    Returns:
        How many files were removed.
    """
    import time

    directory = Path(directory)
    committed = {s.jsonl.name for s in list_shards(directory)}
    cutoff = time.time() - older_than_s
    removed = 0
    for path in directory.iterdir():
        stale = path.name.startswith(".tmp-") or (
            path.name.startswith("shard-")
            and path.suffix == ".jsonl"
            and path.name not in committed
        )
        try:
            if stale and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as fh:
        fh.write(data)
        tmp = fh.name
    os.replace(tmp, path)
