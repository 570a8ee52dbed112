"""The sharded dataset artifact: a manifest and where its shards are; images never travel.

:class:`ShardedDataset` is what ingestion returns when ``dataset.storage: shards``. It is small
(the manifest and a URI), so ZenML passes it between steps as it would a config; the steps that
train stream the shards (:mod:`models.data.streaming`), the steps that evaluate read their
(bounded) val/test split into memory with :meth:`ShardedDataset.split`. Its content hash is the
manifest's, so caching keys on it. It offers the views the in-memory
:class:`~models.data.LabelledImages` offers (``name``, ``hierarchy``, ``image_shape``,
``content_hash``, ``facts()``, ``split()``, ``skipped``), so evaluation code takes either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from models.data.dataset import (
    SPLITS,
    DatasetError,
    LabelledImages,
    SkippedFile,
    stratified_split,
)
from models.data.ingest import (
    DatasetConfig,
    dataset_name,
    read_file_source,
    read_source,
    subsample_splits,
)
from models.data.shards import (
    MANIFEST_FILE,
    Manifest,
    file_payload,
    png_payload,
    write_dataset,
)
from models.data.streaming import (
    Batch,
    ShardError,
    ShardRef,
    StreamedImages,
    StreamSpec,
    make_loader,
)
from models.tree.hierarchy import Hierarchy

ARTIFACT_FILE = "sharded_dataset.json"


class ShardedDataset:
    """A dataset stored as shards + manifest under ``uri`` (a local folder or ``s3://...``).

    Args:
        uri: the dataset's folder.
        manifest: its manifest (content hash verified by :meth:`open`).
        shuffle_buffer: encoded samples each loader worker shuffles.
        workers: loader processes per consumer.
    """

    def __init__(
        self, uri: str, manifest: Manifest, shuffle_buffer: int = 2000, workers: int = 2
    ) -> None:
        self.uri = uri.rstrip("/")
        self.manifest = manifest
        self.shuffle_buffer = shuffle_buffer
        self.workers = workers

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(
        cls, uri: str, shuffle_buffer: int = 2000, workers: int = 2, check_files: bool = True
    ) -> ShardedDataset:
        """Read and verify ``<uri>/manifest.json``.

        Raises:
            ShardError: naming the manifest when its content hash does not match its content,
                or naming a shard that is missing or of another size than recorded.
        """
        import fsspec

        uri = uri.rstrip("/")
        fs, folder = fsspec.core.url_to_fs(uri)
        where = f"{uri}/{MANIFEST_FILE}"
        try:
            with fs.open(f"{folder}/{MANIFEST_FILE}", "r") as fh:
                manifest = Manifest.model_validate_json(fh.read())
        except FileNotFoundError:
            raise ShardError(f"no manifest at {where}") from None
        except ValueError as err:
            raise ShardError(f"manifest {where} is not a valid manifest: {err}") from None
        if manifest.content_hash != manifest.expected_hash():
            raise ShardError(
                f"manifest {where} does not match its content hash ("
                f"{manifest.expected_hash()[:12]} != {manifest.content_hash[:12]}): it was modified"
            )
        if check_files:
            for split, info in manifest.splits.items():
                for shard in info.shards:
                    path = f"{folder}/{shard.name}"
                    size = fs.size(path) if fs.exists(path) else None
                    if size != shard.bytes:
                        found = "missing" if size is None else f"{size} bytes"
                        raise ShardError(
                            f"shard {uri}/{shard.name} ({split}) does not match manifest {where}: "
                            f"{found}, recorded {shard.bytes} bytes"
                        )
        return cls(uri, manifest, shuffle_buffer, workers)

    # ----------------------------------------------------------------- views
    @property
    def name(self) -> str:
        """Dataset name."""
        return self.manifest.name

    @property
    def source(self) -> str:
        """Where the images came from."""
        return self.manifest.source

    @property
    def content_hash(self) -> str:
        """The manifest's hash, which covers every shard's SHA-256."""
        return self.manifest.content_hash

    @cached_property
    def hierarchy(self) -> Hierarchy:
        """The label tree."""
        return Hierarchy.from_dict(self.manifest.hierarchy)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the decoded images."""
        m = self.manifest
        return (m.image_size, m.image_size, m.channels)

    @property
    def skipped(self) -> list[SkippedFile]:
        """Files ingestion could not use."""
        return [SkippedFile(**s) for s in self.manifest.skipped]

    def count(self, split: str) -> int:
        """Images in a split."""
        return self.manifest.splits[split].count

    def class_counts(self, split: str) -> np.ndarray:
        """``[num_leaves]`` images per leaf class in a split."""
        return np.asarray(self.manifest.splits[split].class_counts, dtype=np.int64)

    def facts(self) -> dict[str, Any]:
        """Counts per split, per class and per level (the in-memory dataset's format)."""
        tree = self.hierarchy
        out: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "storage": "shards",
            "uri": self.uri,
            "content_hash": self.content_hash,
            "num_images": sum(self.count(s) for s in SPLITS),
            "image_shape": list(self.image_shape),
            "num_skipped_files": len(self.manifest.skipped),
            "num_shards": sum(len(self.manifest.splits[s].shards) for s in SPLITS),
            "tree": tree.name,
            "levels": list(tree.level_names),
            "level_sizes": list(tree.level_sizes),
            "splits": {},
        }
        for split in SPLITS:
            counts = self.class_counts(split)
            per_level = {}
            for level, level_name in enumerate(tree.level_names):
                per_node = np.bincount(
                    tree.leaf_paths[:, level], weights=counts, minlength=tree.level_sizes[level]
                )
                per_level[level_name] = {
                    node: int(c) for node, c in zip(tree.level_nodes[level], per_node, strict=True)
                }
            out["splits"][split] = {"count": self.count(split), "per_level": per_level}
        return out

    # ----------------------------------------------------------------- streaming
    def shard_refs(self, split: str) -> list[ShardRef]:
        """The split's shards, with their URLs and hashes."""
        if split not in self.manifest.splits:
            raise DatasetError(f"unknown split {split!r}; known: {list(self.manifest.splits)}")
        return [
            ShardRef(f"{self.uri}/{s.name}", s.count, s.sha256)
            for s in self.manifest.splits[split].shards
        ]

    def stream_spec(self, split: str, batch_size: int, **options: Any) -> StreamSpec:
        """A :class:`StreamSpec` of one split (options: ``repeat``, ``seed``, ``rank``, ...)."""
        options.setdefault("shuffle_buffer", self.shuffle_buffer)
        return StreamSpec(
            self.shard_refs(split),
            self.manifest.image_size,
            self.manifest.channels,
            batch_size,
            **options,
        )

    def streamed(self, split: str = "train") -> StreamedImages:
        """The split as an endless, shuffled stream for a training loop."""
        return StreamedImages(
            self.shard_refs(split),
            self.count(split),
            self.manifest.splits[split].class_counts,
            self.manifest.image_size,
            self.manifest.channels,
            self.shuffle_buffer,
            self.workers,
        )

    def batches(
        self, split: str, batch_size: int = 256, workers: int | None = None
    ) -> Iterator[Batch]:
        """One pass over a split in shard order (no shuffling), decoded in worker processes."""
        if not self.manifest.splits[split].shards:
            return iter(())
        spec = self.stream_spec(split, batch_size, shuffle_buffer=0)
        return iter(make_loader(spec, self.workers if workers is None else workers))

    def head(self, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` images of a split (shards are written shuffled: a random sample)."""
        images, labels = [], []
        got = 0
        # small reads decode here; large ones (a whole val/test split) in the loader workers
        workers = self.workers if n > 2000 else 0
        for batch in self.batches(split, batch_size=min(256, max(1, n)), workers=workers):
            images.append(batch.images.permute(0, 2, 3, 1).numpy())
            labels.append(batch.labels.numpy())
            got += len(batch.labels)
            if got >= n:
                break
        if not images:
            h, w, c = self.image_shape
            return np.zeros((0, h, w, c), np.uint8), np.zeros(0, np.int64)
        return np.concatenate(images)[:n], np.concatenate(labels)[:n]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A whole split in memory: for the val and test splits, which evaluation reads."""
        return self.head(name, self.count(name))

    # ----------------------------------------------------------------- storage
    def save(self, directory: str | Path) -> None:
        """Write the artifact (URI, stream settings, manifest) as one JSON file."""
        body = {
            "uri": self.uri,
            "shuffle_buffer": self.shuffle_buffer,
            "workers": self.workers,
            "manifest": self.manifest.model_dump(mode="json"),
        }
        Path(directory, ARTIFACT_FILE).write_text(json.dumps(body, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> ShardedDataset:
        """Inverse of :meth:`save`; re-opens the shards' manifest and checks it is the same."""
        body = json.loads(Path(directory, ARTIFACT_FILE).read_text())
        data = cls.open(body["uri"], body["shuffle_buffer"], body["workers"])
        if data.content_hash != body["manifest"]["content_hash"]:
            raise ShardError(
                f"the shards at {body['uri']} changed since this artifact was written "
                f"(manifest {data.content_hash[:12]} != {body['manifest']['content_hash'][:12]})"
            )
        return data


Dataset = LabelledImages | ShardedDataset


def training_images(data: Dataset) -> tuple[np.ndarray | StreamedImages, np.ndarray | None]:
    """The train split as a training loop takes it: in memory with labels, or streamed."""
    if isinstance(data, ShardedDataset):
        return data.streamed("train"), None
    return data.split("train")


def shard_folder(config: DatasetConfig, root: str, fingerprint: str = "") -> str:
    """The folder a config's shards go to: ``<root>/<name>-<key of config and source files>``."""
    decisive = config.model_dump(mode="json", exclude={"shards": {"workers", "shuffle_buffer"}})
    key = hashlib.sha256(json.dumps([decisive, fingerprint], sort_keys=True).encode()).hexdigest()
    return f"{root.rstrip('/')}/{dataset_name(config)}-{key[:16]}"


def build_sharded_dataset(
    config: DatasetConfig, root: str, fingerprint: str = ""
) -> ShardedDataset:
    """Read the source, split it, and write it as shards + manifest under ``root``.

    When the folder for this config and these source files already holds a complete, verified
    dataset, it is reused, not rewritten.
    """
    folder = shard_folder(config, root, fingerprint)
    stream = {"shuffle_buffer": config.shards.shuffle_buffer, "workers": config.shards.workers}
    try:
        return ShardedDataset.open(folder, **stream)
    except ShardError:
        pass  # nothing (complete) there yet
    if config.source in ("imagenet-folder", "image-folder"):  # files packed as they are
        files = read_file_source(config)
        labels, test_mask, tree = files.labels, files.test_mask, files.hierarchy
        payload, class_ids = file_payload(files.files), files.class_ids
        size, channels, location = config.image_size, config.channels, files.location
        skipped = list(files.skipped)
        root_dir = Path(files.location)

        def describe(i: int) -> str:
            return str(files.files[i].relative_to(root_dir))
    else:
        src = read_source(config)
        labels, test_mask, tree = src.labels, src.test_mask, src.hierarchy
        payload, class_ids = png_payload(src.images), list(tree.leaves)
        size, channels, location = src.images.shape[1], src.images.shape[3], src.location
        skipped = list(src.skipped)
        describe = None  # type: ignore[assignment]
    splits = stratified_split(
        labels, config.val_fraction, config.test_fraction, config.seed, test_mask
    )
    if config.subsample:
        splits = subsample_splits(labels, splits, dict(config.subsample), config.seed)
    manifest = write_dataset(
        folder,
        name=dataset_name(config),
        source=f"{config.source}:{location}",
        labels=labels,
        splits=splits,
        payload=payload,
        hierarchy=tree.to_dict(),
        class_ids=class_ids,
        image_size=int(size),
        channels=int(channels),
        seed=config.seed,
        max_count=config.shards.max_images_per_shard,
        max_bytes=config.shards.max_shard_mb << 20,
        skipped=skipped,
        describe=describe,
    )
    return ShardedDataset(folder, manifest, **stream)
