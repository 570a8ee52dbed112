"""Where images come from: sources, ingestion into the dataset artifact, image decoding.

:class:`LabelledImages` is the dataset artifact (uint8 images, leaf labels, the tree, split
indices, a content hash); :func:`build_dataset` makes it from a :class:`DatasetConfig`
(Fashion-MNIST, CIFAR-10/100 or an image folder, read by :mod:`.sources`); :func:`decode_image`
turns any image file into the model's input, the same way for training and serving.
"""

from models.data.dataset import (
    SPLITS,
    DatasetError,
    LabelledImages,
    SkippedFile,
    image_digests,
    stratified_fraction,
    stratified_split,
)
from models.data.images import ImageDecodeError, decode_image
from models.data.ingest import DatasetConfig, build_dataset
from models.data.sources import SOURCES, source_fingerprint

__all__ = [
    "SOURCES",
    "SPLITS",
    "DatasetConfig",
    "DatasetError",
    "ImageDecodeError",
    "LabelledImages",
    "SkippedFile",
    "build_dataset",
    "decode_image",
    "image_digests",
    "source_fingerprint",
    "stratified_fraction",
    "stratified_split",
]
