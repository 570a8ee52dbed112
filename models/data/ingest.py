"""Build the dataset artifact from a source: read, map onto the tree, split, subsample."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.data.dataset import SPLITS, DatasetError, LabelledImages, stratified_split
from models.data.sources import (
    SourceImages,
    read_cifar,
    read_fashion_mnist,
    read_image_folder,
)
from models.tree.hierarchy import Hierarchy, builtin_tree_path

logger = logging.getLogger(__name__)


class DatasetConfig(BaseModel):
    """What to ingest and how to split it (``dataset:`` in the pipeline YAML)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["fashion-mnist", "cifar10", "cifar100", "image-folder"] = "fashion-mnist"
    data_dir: str = Field("data", description="data root; for image-folder, the top folder")
    tree: str | None = Field(
        None, description="tree YAML path or built-in name; default: the source's own tree"
    )
    image_size: int = Field(28, ge=8, le=512, description="image-folder: resize to this")
    channels: Literal[1, 3] = Field(1, description="image-folder: 1 grayscale, 3 RGB")
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
    else:
        tree = _load_tree(config.tree) if config.tree else None
        return read_image_folder(config.data_dir, config.image_size, config.channels, tree)
    if config.tree:
        src = _relabel(src, _load_tree(config.tree))
    return src


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
    name = config.source if config.source != "image-folder" else Path(config.data_dir).name
    return LabelledImages(
        name=name,
        images=np.ascontiguousarray(images),
        labels=labels,
        hierarchy=src.hierarchy,
        splits=splits,
        source=f"{config.source}:{src.location}",
        skipped=src.skipped,
    )


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
