"""The ImageNet folder layout, as files to pack into shards (nothing is decoded here).

Layout (the one ILSVRC's archives unpack to, and most copies of them)::

    root/train/<wnid>/*.JPEG                 training images, one folder per synset
    root/val/<wnid>/*.JPEG                   validation images in per-class folders, or
    root/val/*.JPEG + a labels file          flat, with ``<image> <wnid>`` per line (or the
                                             ``ImageId,PredictionString`` CSV of LOC_val_solution)

``train/`` is split into train and val (stratified); ``val/`` is the official held-out set and
becomes the test split, as Fashion-MNIST's official test set does. The label tree comes from
WordNet (:func:`models.tree.wordnet.wordnet_tree`); any subset of synsets may be chosen.
Decoding and resizing happen later, in the loader workers that stream the shards.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.data.dataset import DatasetError, SkippedFile
from models.data.images import IMAGE_SUFFIXES, visible_files
from models.tree.hierarchy import Hierarchy
from models.tree.wordnet import synset_of, wordnet_tree

LABEL_FILE_NAMES = ("LOC_val_solution.csv", "val_labels.txt", "val_labels.csv", "labels.txt")


@dataclass
class FileSource:
    """Labelled image files, before splitting: what an ImageNet-style folder holds.

    Attributes:
        files: one path per image.
        labels: ``[N]`` int64 leaf indices (leaf ``i`` is ``class_ids[i]``).
        hierarchy: the label tree.
        class_ids: the wnid of each leaf, in label order.
        test_mask: ``[N]`` bool, the official held-out set (``val/``); None without ``val/``.
        location: the root folder.
        skipped: files that are not usable images, with the reason.
    """

    files: list[Path]
    labels: np.ndarray
    hierarchy: Hierarchy
    class_ids: list[str]
    test_mask: np.ndarray | None
    location: str
    skipped: list[SkippedFile] = field(default_factory=list)


def read_imagenet_folder(
    root: str | Path,
    levels: int,
    synsets: list[str] | None = None,
    val_labels: str | Path | None = None,
) -> FileSource:
    """List an ImageNet-style folder and build its WordNet tree.

    Args:
        root: the folder holding ``train/`` (and usually ``val/``).
        levels: levels of the WordNet tree, the leaf level included.
        synsets: the wnids to use (a subset); default every folder in ``train/``.
        val_labels: the labels file of a flat ``val/``; default: one of
            :data:`LABEL_FILE_NAMES` in ``root`` or ``root/val``.

    Raises:
        DatasetError: naming the folder or wnid at fault: no ``train/``, a chosen wnid without a
            folder, an empty class folder, a val image of an unknown class.
        WordNetError: a wnid that WordNet does not have.
    """
    root = Path(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DatasetError(f"{root}: no train/ folder (expected train/<wnid>/*.JPEG)")
    present = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and p.name[0] != ".")
    wnids = sorted(synsets) if synsets else present
    missing = [w for w in wnids if w not in present]
    if missing:
        raise DatasetError(f"{train_dir}: no folder for the chosen synset(s) {missing[:10]}")
    for wnid in wnids:
        synset_of(wnid)  # fails naming a wnid WordNet lacks, before any file is listed
    tree = wordnet_tree(wnids, levels, name=root.name or "imagenet")
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    skipped: list[SkippedFile] = []
    for wnid in wnids:
        found = _class_files(train_dir / wnid, root, skipped)
        if not found:
            raise DatasetError(f"empty class folder {train_dir / wnid}: no image files in it")
        files += found
        labels += [index[wnid]] * len(found)
    n_train = len(files)
    val_files, val_labels_ = _val_files(root, index, val_labels, skipped)
    files += val_files
    labels += val_labels_
    test_mask = np.zeros(len(files), dtype=bool)
    test_mask[n_train:] = True
    return FileSource(
        files=files,
        labels=np.asarray(labels, dtype=np.int64),
        hierarchy=tree,
        class_ids=list(wnids),
        test_mask=test_mask if val_files else None,
        location=str(root),
        skipped=skipped,
    )


def _class_files(folder: Path, root: Path, skipped: list[SkippedFile]) -> list[Path]:
    """Image files of one class folder; other files go to ``skipped``."""
    out = []
    for path in visible_files(folder):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            out.append(path)
        else:
            skipped.append(
                SkippedFile(str(path.relative_to(root)), f"not an image file ({path.suffix!r})")
            )
    return out


def _val_files(
    root: Path, index: dict[str, int], labels_file: str | Path | None, skipped: list[SkippedFile]
) -> tuple[list[Path], list[int]]:
    """The official validation images of the chosen classes (none when there is no ``val/``)."""
    val_dir = root / "val"
    if not val_dir.is_dir():
        return [], []
    class_dirs = [p for p in val_dir.iterdir() if p.is_dir() and p.name[0] != "."]
    files: list[Path] = []
    labels: list[int] = []
    if class_dirs:
        for folder in sorted(class_dirs):
            if folder.name in index:
                found = _class_files(folder, root, skipped)
                files += found
                labels += [index[folder.name]] * len(found)
        return files, labels
    mapping = _read_val_labels(_find_labels_file(root, labels_file))
    for path in visible_files(val_dir):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        wnid = mapping.get(path.name) or mapping.get(path.stem)
        if wnid is None:
            skipped.append(SkippedFile(str(path.relative_to(root)), "not in the val labels file"))
        elif wnid in index:
            files.append(path)
            labels.append(index[wnid])
    return files, labels


def _find_labels_file(root: Path, given: str | Path | None) -> Path:
    if given:
        path = Path(given)
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise DatasetError(f"val labels file {path} does not exist")
        return path
    for folder in (root, root / "val"):
        for name in LABEL_FILE_NAMES:
            if (folder / name).is_file():
                return folder / name
    raise DatasetError(
        f"{root / 'val'} is flat (no class folders) and no labels file was found: put one of "
        f"{list(LABEL_FILE_NAMES)} in {root}, or set dataset.val_labels"
    )


def _read_val_labels(path: Path) -> dict[str, str]:
    """``image name -> wnid`` from ``<image> <wnid>`` lines or the LOC_val_solution CSV."""
    out: dict[str, str] = {}
    with open(path, newline="") as fh:
        rows = csv.reader(fh) if path.suffix == ".csv" else (line.split() for line in fh)
        for lineno, row in enumerate(rows, 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise DatasetError(f"{path}:{lineno}: expected '<image> <wnid>', got {row!r}")
            image, wnid = row[0].strip(), row[1].split()[0] if row[1].split() else ""
            if lineno == 1 and not (wnid[:1] == "n" and wnid[1:].isdigit()):
                continue  # a header line
            if not (len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit()):
                raise DatasetError(f"{path}:{lineno}: {wnid!r} is not a wnid")
            out[image] = wnid
    return out
