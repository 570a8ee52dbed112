"""The dataset artifact: uint8 images, leaf labels, the tree, split indices and a content hash.

Everything later in the pipeline receives a :class:`LabelledImages` and can say exactly what it
was trained on through :attr:`LabelledImages.content_hash`. Storage is an ``.npz`` plus a JSON
sidecar, loaded with ``allow_pickle=False``: nothing in it can execute code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from models.tree.hierarchy import Hierarchy

SPLITS = ("train", "val", "test")
ARRAYS_FILE = "dataset.npz"
META_FILE = "dataset.json"


class DatasetError(ValueError):
    """A dataset is malformed; the message says what and where."""


@dataclass(frozen=True)
class SkippedFile:
    """A file that ingestion could not use, and why."""

    path: str
    reason: str


@dataclass
class LabelledImages:
    """Images labelled with leaves of a tree, split into train/val/test.

    Attributes:
        name: dataset name, e.g. ``fashion-mnist``.
        images: ``[N, H, W, C]`` uint8.
        labels: ``[N]`` int64 leaf indices into ``hierarchy.leaves``.
        hierarchy: the label tree.
        splits: ``{"train"|"val"|"test": sorted int64 indices into images}``, disjoint.
        source: where the images came from (source kind and location).
        skipped: files that could not be read, with the reason.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    hierarchy: Hierarchy
    splits: dict[str, np.ndarray]
    source: str = ""
    skipped: list[SkippedFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.splits = {k: np.asarray(v, dtype=np.int64) for k, v in self.splits.items()}
        self.check()

    def check(self) -> None:
        """Raise :class:`DatasetError` if shapes, dtypes, labels or splits are inconsistent."""
        if self.images.dtype != np.uint8:
            raise DatasetError(f"{self.name}: images must be uint8, got {self.images.dtype}")
        if self.images.ndim != 4 or self.images.shape[-1] not in (1, 3):
            raise DatasetError(
                f"{self.name}: images must be [N, H, W, C] with C in (1, 3), "
                f"got shape {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise DatasetError(
                f"{self.name}: {len(self.labels)} labels for {len(self.images)} images"
            )
        self.hierarchy.check_labels(self.labels, where=f"{self.name} labels")
        if set(self.splits) != set(SPLITS):
            raise DatasetError(f"{self.name}: splits must be {SPLITS}, got {sorted(self.splits)}")
        seen = np.zeros(len(self.images), dtype=bool)
        for split in SPLITS:
            idx = self.splits[split]
            if idx.size and (idx.min() < 0 or idx.max() >= len(self.images)):
                raise DatasetError(f"{self.name}: split {split!r} indexes outside the images")
            if seen[idx].any():
                raise DatasetError(f"{self.name}: split {split!r} overlaps an earlier split")
            seen[idx] = True

    # ----------------------------------------------------------------- views
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` of one split."""
        if name not in self.splits:
            raise DatasetError(f"unknown split {name!r}; known: {list(self.splits)}")
        idx = self.splits[name]
        return self.images[idx], self.labels[idx]

    def class_counts(self, name: str) -> np.ndarray:
        """``[num_leaves]`` images per leaf class in a split."""
        labels = self.labels[self.splits[name]]
        return np.bincount(labels, minlength=self.hierarchy.num_leaves).astype(np.int64)

    def head(self, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` images of a split (the streamed dataset's way of sampling)."""
        images, labels = self.split(name)
        return images[:n], labels[:n]

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 over images, labels, tree and splits: what every later artifact cites."""
        h = hashlib.sha256()
        h.update(json.dumps([list(self.images.shape), str(self.images.dtype)]).encode())
        h.update(np.ascontiguousarray(self.images).data)
        h.update(np.ascontiguousarray(self.labels).data)
        h.update(self.hierarchy.to_json().encode())
        for split in SPLITS:
            h.update(split.encode())
            h.update(np.ascontiguousarray(self.splits[split]).data)
        return h.hexdigest()

    def facts(self) -> dict[str, Any]:
        """Counts per split, per class and per level, for logs and metadata."""
        tree = self.hierarchy
        out: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "content_hash": self.content_hash,
            "num_images": int(len(self.images)),
            "image_shape": list(self.image_shape),
            "num_skipped_files": len(self.skipped),
            "tree": tree.name,
            "levels": list(tree.level_names),
            "level_sizes": list(tree.level_sizes),
            "splits": {},
        }
        for split in SPLITS:
            labels = self.labels[self.splits[split]]
            per_level = {}
            for level, level_name in enumerate(tree.level_names):
                counts = np.bincount(
                    tree.leaf_paths[labels, level], minlength=tree.level_sizes[level]
                )
                per_level[level_name] = {
                    node: int(c) for node, c in zip(tree.level_nodes[level], counts, strict=True)
                }
            out["splits"][split] = {"count": int(len(labels)), "per_level": per_level}
        return out

    # ----------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Write ``dataset.npz`` and ``dataset.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"images": self.images, "labels": self.labels}
        arrays.update({f"split_{k}": v for k, v in self.splits.items()})
        with open(directory / ARRAYS_FILE, "wb") as fh:
            np.savez(fh, **arrays)
        meta = {
            "format": 1,
            "name": self.name,
            "source": self.source,
            "hierarchy": self.hierarchy.to_dict(),
            "skipped": [s.__dict__ for s in self.skipped],
            "content_hash": self.content_hash,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> LabelledImages:
        """Inverse of :meth:`save`; verifies the stored content hash.

        Raises:
            DatasetError: if a file is missing or the content does not match its hash.
        """
        directory = Path(directory)
        try:
            meta = json.loads((directory / META_FILE).read_text())
            with np.load(directory / ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, KeyError) as err:
            raise DatasetError(f"cannot read dataset from {directory}: {err}") from err
        data = cls(
            name=meta["name"],
            images=arrays["images"],
            labels=arrays["labels"],
            hierarchy=Hierarchy.from_dict(meta["hierarchy"]),
            splits={k: arrays[f"split_{k}"] for k in SPLITS},
            source=meta.get("source", ""),
            skipped=[SkippedFile(**s) for s in meta.get("skipped", [])],
        )
        if data.content_hash != meta["content_hash"]:
            raise DatasetError(
                f"dataset in {directory} does not match its recorded hash "
                f"({data.content_hash[:12]} != {meta['content_hash'][:12]}): it was modified"
            )
        return data


def stratified_split(
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test_mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Deterministic stratified train/val/test indices.

    Args:
        labels: ``[N]`` class labels to stratify on.
        val_fraction: share of each class (of the non-test pool) that goes to validation.
        test_fraction: share of each class that goes to test; ignored when ``test_mask`` is given.
        seed: the split depends on nothing else.
        test_mask: ``[N]`` bool, a fixed test set (e.g. the official one); the remaining images
            are split into train and val.

    Returns:
        ``{"train", "val", "test"}`` sorted int64 index arrays, disjoint, covering all images.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"split fractions must be in [0, 1) and sum below 1: val={val_fraction}, "
            f"test={test_fraction}"
        )
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in SPLITS}
    if test_mask is not None:
        out["test"].append(np.flatnonzero(test_mask))
        pool = np.flatnonzero(~test_mask)
    else:
        pool = np.arange(len(labels))
    for cls_ in np.unique(labels[pool]):
        members = pool[labels[pool] == cls_]
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_test = 0 if test_mask is not None else int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        out["test"].append(members[:n_test])
        out["val"].append(members[n_test : n_test + n_val])
        out["train"].append(members[n_test + n_val :])
    return {
        k: np.sort(np.concatenate(v)).astype(np.int64) if v else np.zeros(0, np.int64)
        for k, v in out.items()
    }


def image_digests(images: np.ndarray) -> np.ndarray:
    """One hex BLAKE2b digest per image (``[N]`` str), for exact-duplicate and leakage checks."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return np.asarray([hashlib.blake2b(row.data, digest_size=12).hexdigest() for row in flat])


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified ``fraction`` of ``labels`` (at least one per class).

    The subset whose labels a semi-supervised GAN or a classifier may use; all indices when
    ``fraction >= 1``.
    """
    if fraction >= 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed + 104729)
    chosen = []
    for cls_ in np.unique(labels):
        members = np.flatnonzero(labels == cls_)
        k = max(1, int(round(len(members) * fraction)))
        chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen))
