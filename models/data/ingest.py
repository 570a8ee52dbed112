"""Build the dataset artifact from a source: read, map onto the tree, split, subsample."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.data.dataset import (
    SPLITS,
    DatasetError,
    LabelledImages,
    SkippedFile,
    stratified_split,
)
from models.data.imagenet import FileSource, read_imagenet_folder
from models.data.images import decode_files
from models.data.sources import (
    SourceImages,
    image_folder_files,
    read_cifar,
    read_fashion_mnist,
    read_image_folder,
)
from models.tree.hierarchy import Hierarchy, builtin_tree_path

logger = logging.getLogger(__name__)


class ShardsConfig(BaseModel):
    """Where and how a dataset is written as shards, and how they are streamed back."""

    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(
        None,
        description="folder for the shards (local path or s3://...); default: the artifact "
        "store's hiergan-shards/ folder",
    )
    max_images_per_shard: int = Field(10000, ge=1)
    max_shard_mb: int = Field(256, ge=1)
    shuffle_buffer: int = Field(2000, ge=0, description="encoded samples shuffled per worker")
    workers: int = Field(2, ge=0, description="loader processes that read and decode")


class DatasetConfig(BaseModel):
    """What to ingest and how to split it (``dataset:`` in the pipeline YAML)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["fashion-mnist", "cifar10", "cifar100", "image-folder", "imagenet-folder"] = (
        "fashion-mnist"
    )
    data_dir: str = Field("data", description="data root; for image folders, the top folder")
    tree: str | None = Field(
        None, description="tree YAML path or built-in name; default: the source's own tree"
    )
    image_size: int = Field(28, ge=8, le=512, description="image folders: resize to this")
    channels: Literal[1, 3] = Field(1, description="image folders: 1 grayscale, 3 RGB")
    storage: Literal["memory", "shards"] = Field(
        "memory", description="one in-memory array, or tar shards + a manifest, streamed"
    )
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    synsets: list[str] | str | None = Field(
        None, description="imagenet-folder: the wnids to use, or a file listing one per line"
    )
    tree_levels: int = Field(3, ge=2, le=8, description="imagenet-folder: WordNet tree levels")
    val_labels: str | None = Field(
        None, description="imagenet-folder: labels file of a flat val/ (default: found in root)"
    )
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(
        0.15, ge=0, lt=1, description="used only when the source has no official test set"
    )
    seed: int = 0
    subsample: dict[Literal["train", "val", "test"], int] | None = Field(
        None,
        description="keep at most this many images per split (stratified), e.g. for smoke runs",
    )
    allow_download: bool = True


def read_source(config: DatasetConfig) -> SourceImages:
    """Read the configured source, labelled against the configured (or its own) tree."""
    if config.source == "fashion-mnist":
        src = read_fashion_mnist(config.data_dir, allow_download=config.allow_download)
    elif config.source in ("cifar10", "cifar100"):
        src = read_cifar(config.source, config.data_dir, allow_download=config.allow_download)
    elif config.source == "imagenet-folder":
        files = read_file_source(config)
        decoded = decode_files(files.files, config.image_size, config.channels)
        keep = [i for i, r in enumerate(decoded) if not isinstance(r, str)]
        skipped = files.skipped + [
            SkippedFile(str(files.files[i]), r) for i, r in enumerate(decoded) if isinstance(r, str)
        ]
        if not keep:
            raise DatasetError(f"no readable images under {config.data_dir}")
        return SourceImages(
            images=np.stack([decoded[i] for i in keep]),
            labels=files.labels[keep],
            hierarchy=files.hierarchy,
            test_mask=None if files.test_mask is None else files.test_mask[keep],
            location=files.location,
            skipped=skipped,
        )
    else:
        tree = _load_tree(config.tree) if config.tree else None
        return read_image_folder(config.data_dir, config.image_size, config.channels, tree)
    if config.tree:
        src = _relabel(src, _load_tree(config.tree))
    return src


def read_file_source(config: DatasetConfig) -> FileSource:
    """The files of an image-folder or ``imagenet-folder`` source, labelled, not decoded."""
    if config.source == "image-folder":
        root = Path(config.data_dir)
        tree = _load_tree(config.tree) if config.tree else None
        found, hierarchy, skipped = image_folder_files(root, tree)
        if not found:
            raise DatasetError(f"no image files under {root} ({len(skipped)} files skipped)")
        return FileSource(
            files=[p for p, _ in found],
            labels=np.asarray([leaf for _, leaf in found], dtype=np.int64),
            hierarchy=hierarchy,
            class_ids=list(hierarchy.leaves),
            test_mask=None,
            location=str(root),
            skipped=skipped,
        )
    synsets = config.synsets
    if isinstance(synsets, str):
        path = Path(synsets)
        if not path.is_file():
            raise DatasetError(f"synsets file {path} does not exist")
        synsets = [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    return read_imagenet_folder(config.data_dir, config.tree_levels, synsets, config.val_labels)


def build_dataset(config: DatasetConfig) -> LabelledImages:
    """Read, split (stratified, seeded) and optionally subsample into a :class:`LabelledImages`."""
    src = read_source(config)
    splits = stratified_split(
        src.labels, config.val_fraction, config.test_fraction, config.seed, src.test_mask
    )
    images, labels = src.images, src.labels
    if config.subsample:
        splits = subsample_splits(labels, splits, dict(config.subsample), config.seed)
        keep = np.sort(np.concatenate([splits[s] for s in SPLITS]))
        remap = np.full(len(images), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        images, labels = images[keep], labels[keep]
        splits = {s: remap[splits[s]] for s in SPLITS}
    name = dataset_name(config)
    return LabelledImages(
        name=name,
        images=np.ascontiguousarray(images),
        labels=labels,
        hierarchy=src.hierarchy,
        splits=splits,
        source=f"{config.source}:{src.location}",
        skipped=src.skipped,
    )


def dataset_name(config: DatasetConfig) -> str:
    """The source's name, or the folder's for image folders."""
    return config.source if "folder" not in config.source else Path(config.data_dir).name


def subsample_splits(
    labels: np.ndarray, splits: dict[str, np.ndarray], limits: dict[str, int], seed: int
) -> dict[str, np.ndarray]:
    """Keep at most ``limits[split]`` indices per split, each class in proportion to its share."""
    rng = np.random.default_rng(seed + 1)
    out = {}
    for split, idx in splits.items():
        limit = limits.get(split)
        if limit is None or limit >= len(idx):
            out[split] = idx
            continue
        chosen = []
        classes, counts = np.unique(labels[idx], return_counts=True)
        quota = np.maximum(1, np.floor(counts / counts.sum() * limit)).astype(int)
        for cls_, q in zip(classes, quota, strict=True):
            members = idx[labels[idx] == cls_]
            chosen.append(rng.choice(members, size=min(q, len(members)), replace=False))
        out[split] = np.sort(np.concatenate(chosen))
    return out


def _load_tree(ref: str) -> Hierarchy:
    path = Path(ref)
    return Hierarchy.from_yaml(path if path.suffix in (".yaml", ".yml") else builtin_tree_path(ref))


def _relabel(src: SourceImages, tree: Hierarchy) -> SourceImages:
    """Map a source's labels onto another tree with the same leaf names."""
    try:
        to_new = np.asarray([tree.leaf_index(leaf) for leaf in src.hierarchy.leaves])
    except ValueError as err:
        raise DatasetError(f"tree {tree.name!r} does not fit the source's classes: {err}") from err
    src.labels = to_new[src.labels]
    src.hierarchy = tree
    return src
