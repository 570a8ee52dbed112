"""ZenML materializers for the core's types: plain files, never pickle."""

from __future__ import annotations

import os
import tempfile
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.metadata.metadata_types import MetadataType

from models.classifier.io import TrainedClassifier
from models.data.dataset import LabelledImages
from models.data.sharded import ShardedDataset
from models.gan.io import SAMPLES_FILE, TrainedGan
from models.reporting.plots import sample_grid_png


class _DirectoryMaterializer(BaseMaterializer):
    """Types with ``save(directory)`` and a ``load(directory)`` classmethod, as plain files.

    Works with any artifact store: files are staged in a local temporary folder and copied with
    ``fileio``. Nothing is pickled; each type's ``load`` validates what it reads.
    """

    SKIP_REGISTRATION: ClassVar[bool] = True

    def load(self, data_type: type[Any]) -> Any:
        """Copy the files to a local folder and read them with the type's own loader."""
        with tempfile.TemporaryDirectory(prefix="hiergan-") as tmp:
            _copy_dir(self.uri, tmp)
            return data_type.load(tmp)

    def save(self, data: Any) -> None:
        """Write the files locally, then copy them into the artifact store."""
        with tempfile.TemporaryDirectory(prefix="hiergan-") as tmp:
            data.save(tmp)
            _copy_dir(tmp, self.uri)


class LabelledImagesMaterializer(_DirectoryMaterializer):
    """Stores a :class:`LabelledImages` as ``dataset.npz`` + ``dataset.json`` (hash verified)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (LabelledImages,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save_visualizations(self, data: LabelledImages) -> dict[str, VisualizationType]:
        """A grid of training examples, one row per leaf class."""
        images, labels = data.split("train")
        png = sample_grid_png(images, labels, data.hierarchy.leaves)
        path = os.path.join(self.uri, "train_samples.png")
        with fileio.open(path, "wb") as fh:
            fh.write(png)
        return {path: VisualizationType.IMAGE}

    def extract_metadata(self, data: LabelledImages) -> dict[str, MetadataType]:
        """Content hash, shape and split sizes, searchable in the dashboard."""
        return {
            "content_hash": data.content_hash,
            "num_images": len(data.images),
            "image_shape": str(data.image_shape),
            "tree": data.hierarchy.name,
            **{f"{s}_count": int(len(data.splits[s])) for s in data.splits},
            "skipped_files": len(data.skipped),
        }


class ShardedDatasetMaterializer(_DirectoryMaterializer):
    """Stores a :class:`ShardedDataset` as its manifest and URI: the shards stay where they are.

    Its content hash is the manifest's, so the cache of every step that reads the dataset keys on
    the data itself, not on which run wrote the artifact.
    """

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ShardedDataset,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def compute_content_hash(self, data: ShardedDataset) -> str:
        """The manifest's content hash (it covers every shard's SHA-256)."""
        return data.content_hash

    def save_visualizations(self, data: ShardedDataset) -> dict[str, VisualizationType]:
        """A grid of the first training examples (the shards are shuffled), one row per class."""
        images, labels = data.head("train", 1000)
        path = os.path.join(self.uri, "train_samples.png")
        with fileio.open(path, "wb") as fh:
            fh.write(sample_grid_png(images, labels, data.hierarchy.leaves))
        return {path: VisualizationType.IMAGE}

    def extract_metadata(self, data: ShardedDataset) -> dict[str, MetadataType]:
        """Content hash, where the shards are, shape and split sizes."""
        return {
            "content_hash": data.content_hash,
            "uri": data.uri,
            "num_images": sum(data.count(s) for s in ("train", "val", "test")),
            "image_shape": str(data.image_shape),
            "tree": data.hierarchy.name,
            **{f"{s}_count": data.count(s) for s in ("train", "val", "test")},
            "skipped_files": len(data.manifest.skipped),
        }


class TrainedGanMaterializer(_DirectoryMaterializer):
    """Stores a :class:`TrainedGan` as safetensors weights + JSON + the sample grid."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (TrainedGan,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save_visualizations(self, data: TrainedGan) -> dict[str, VisualizationType]:
        """The final fixed-noise sample grid."""
        if not data.samples_png:
            return {}
        return {os.path.join(self.uri, SAMPLES_FILE): VisualizationType.IMAGE}

    def extract_metadata(self, data: TrainedGan) -> dict[str, MetadataType]:
        """Scalar facts of the run (probe accuracies, images/s, steps)."""
        return {k: v for k, v in data.info.items() if isinstance(v, int | float | str | bool)}


def _copy_dir(src: str, dst: str) -> None:
    fileio.makedirs(dst)
    for name in fileio.listdir(src):
        name = name.decode() if isinstance(name, bytes) else name
        fileio.copy(os.path.join(src, name), os.path.join(dst, name), overwrite=True)


class TrainedClassifierMaterializer(_DirectoryMaterializer):
    """Stores a :class:`TrainedClassifier` as safetensors weights + JSON (tree, calibration)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (TrainedClassifier,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def extract_metadata(self, data: TrainedClassifier) -> dict[str, MetadataType]:
        """The calibration maps and the scalar facts of the run."""
        scalars = {k: v for k, v in data.info.items() if isinstance(v, int | float | str | bool)}
        return scalars | {"calibration": str(data.calibration_methods)}
