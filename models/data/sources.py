"""Readers for the dataset sources: Fashion-MNIST, CIFAR-10/100 and nested image folders.

Each reader returns :class:`SourceImages`: uint8 ``[N, H, W, C]`` images, leaf labels in the
source's tree, and (where the source has one) the official test set. Files that cannot be read
are listed in ``skipped`` with the reason, never dropped silently.

Run ``python -m models.data.sources fetch-fashion-mnist --data-dir data`` to put Fashion-MNIST where
the reader looks for it (``make setup`` does).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.data.dataset import DatasetError, SkippedFile
from models.data.images import IMAGE_SUFFIXES, decode_files, visible_files
from models.tree.hierarchy import Hierarchy, HierarchyError, load_builtin_tree

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SOURCES = ("fashion-mnist", "cifar10", "cifar100", "image-folder", "imagenet-folder")


@dataclass
class SourceImages:
    """What a source reader returns, before splitting."""

    images: np.ndarray  # [N, H, W, C] uint8
    labels: np.ndarray  # [N] int64 leaf indices into hierarchy
    hierarchy: Hierarchy
    test_mask: np.ndarray | None  # [N] bool: the source's official test set, if it has one
    location: str
    skipped: list[SkippedFile] = field(default_factory=list)


# --------------------------------------------------------------------------- Fashion-MNIST
def _fashion_mnist_raw_dir(data_dir: Path) -> Path:
    # The layout torchvision uses, so its download and ours land in the same place.
    return data_dir / "FashionMNIST" / "raw"


def _fashion_mnist_folders(data_dir: Path) -> list[Path]:
    # where the IDX files are looked for: our download folder, then Debian's package
    return [_fashion_mnist_raw_dir(data_dir), DEBIAN_FASHION_MNIST]


def find_fashion_mnist_file(data_dir: str | Path, key: str) -> Path | None:
    """Where one of :data:`FASHION_MNIST_FILES` (by key) is, plain or gzipped; None if nowhere."""
    return _find_idx(FASHION_MNIST_FILES[key], _fashion_mnist_folders(Path(data_dir)))


def _find_idx(stem: str, folders: Iterable[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) as used by MNIST and Fashion-MNIST.

    Raises:
        DatasetError: if the file is truncated or not IDX.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: cannot read: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetError(f"{path}: {len(raw)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def fetch_fashion_mnist(data_dir: str | Path, allow_download: bool = True) -> Path:
    """Make sure the four Fashion-MNIST IDX files are in ``<data_dir>/FashionMNIST/raw``.

    Order: already there; Debian's ``dataset-fashion-mnist`` (gunzipped, since its re-gzipped
    files fail torchvision's md5 list); torchvision's download when ``allow_download``.

    Returns:
        The folder holding the files.

    Raises:
        DatasetError: with instructions, when none of these works.
    """
    raw_dir = _fashion_mnist_raw_dir(Path(data_dir))
    stems = list(FASHION_MNIST_FILES.values())
    if all(_find_idx(s, [raw_dir]) for s in stems):
        return raw_dir
    if all((DEBIAN_FASHION_MNIST / f"{s}.gz").is_file() for s in stems):
        raw_dir.mkdir(parents=True, exist_ok=True)
        for stem in stems:
            tmp = raw_dir / f".{stem}.partial"
            with (
                gzip.open(DEBIAN_FASHION_MNIST / f"{stem}.gz", "rb") as src,
                open(tmp, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
            tmp.replace(raw_dir / stem)  # atomic: a killed copy leaves no half file behind
        return raw_dir
    if allow_download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(data_dir), train=True, download=True)
            FashionMNIST(str(data_dir), train=False, download=True)
            return raw_dir
        except Exception as err:  # noqa: BLE001 - any network/IO failure ends in the same advice
            reason = f"the download failed ({type(err).__name__}: {err})"
    else:
        reason = "downloads are disabled"
    raise DatasetError(
        f"Fashion-MNIST not found in {raw_dir} nor in {DEBIAN_FASHION_MNIST}, and {reason}.\n"
        "Provide it in one of these ways:\n"
        "  - as root on Debian/Ubuntu: apt-get install dataset-fashion-mnist\n"
        f"  - copy the four files {stems} (optionally .gz) into {raw_dir}\n"
        "  - run once with network access (torchvision downloads them)"
    )


def read_fashion_mnist(data_dir: str | Path, allow_download: bool = True) -> SourceImages:
    """Fashion-MNIST: 60k train + 10k official test images, 28x28x1, in the shipped 3-level tree."""
    raw_dir = _fashion_mnist_raw_dir(Path(data_dir))
    paths = {k: find_fashion_mnist_file(data_dir, k) for k in FASHION_MNIST_FILES}
    if not all(paths.values()):
        fetch_fashion_mnist(data_dir, allow_download=allow_download)
        paths = {k: _find_idx(stem, [raw_dir]) for k, stem in FASHION_MNIST_FILES.items()}
    arrays = {k: read_idx(p) for k, p in paths.items()}  # type: ignore[arg-type]
    for part in ("train", "test"):
        n_img, n_lab = len(arrays[f"{part}_images"]), len(arrays[f"{part}_labels"])
        if n_img != n_lab:
            raise DatasetError(f"Fashion-MNIST {part}: {n_img} images but {n_lab} labels")
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])[..., None]
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int64)
    test_mask = np.zeros(len(images), dtype=bool)
    test_mask[len(arrays["train_images"]) :] = True
    return SourceImages(
        images=images,
        labels=labels,
        hierarchy=load_builtin_tree("fashion-mnist"),
        test_mask=test_mask,
        location=str(paths["train_images"].parent),  # type: ignore[union-attr]
    )


# --------------------------------------------------------------------------- CIFAR
def read_cifar(kind: str, data_dir: str | Path, allow_download: bool = True) -> SourceImages:
    """CIFAR-10 or CIFAR-100 through torchvision, mapped onto the shipped tree by class name.

    torchvision unpickles the official archive's batch files after checking the archive's md5;
    this reader never unpickles anything a user hands it directly.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = {"cifar10": CIFAR10, "cifar100": CIFAR100}[kind]
    tree = load_builtin_tree(kind)
    parts = []
    for train in (True, False):
        try:
            parts.append(cls(str(data_dir), train=train, download=allow_download))
        except RuntimeError as err:
            raise DatasetError(
                f"{kind} not found or corrupted under {data_dir} ({err}). Run once with network "
                f"access, or place torchvision's extracted archive in {data_dir}."
            ) from err
    # torchvision's label order comes from the archive's meta file: map by name onto the tree.
    to_leaf = np.asarray([tree.leaf_index(name) for name in parts[0].classes], dtype=np.int64)
    images = np.concatenate([p.data for p in parts]).astype(np.uint8)
    labels = to_leaf[np.concatenate([np.asarray(p.targets) for p in parts])]
    test_mask = np.zeros(len(images), dtype=bool)
    test_mask[len(parts[0].data) :] = True
    return SourceImages(images, labels, tree, test_mask, location=str(data_dir))


# --------------------------------------------------------------------------- image folders
def folder_tree(root: str | Path, name: str | None = None) -> Hierarchy:
    """Read a tree from nested folders: ``root/<level1>/.../<leaf>/<image files>``.

    A folder is a leaf when it holds files and no sub-folders. Hidden folders are ignored.
    Leaves are numbered in sorted path order, so the labels do not depend on the file system.

    Raises:
        HierarchyError: on an empty folder, a folder holding both images and sub-folders, or
            leaves at different depths.
    """
    root = Path(root)
    if not root.is_dir():
        raise HierarchyError(f"image folder {root} does not exist or is not a directory")
    paths: list[tuple[str, ...]] = []

    def visit(folder: Path, prefix: tuple[str, ...]) -> None:
        children = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        subdirs = [p for p in children if p.is_dir()]
        images = [p for p in children if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if subdirs and images:
            raise HierarchyError(
                f"folder {folder} holds both images and sub-folders; "
                "images belong in leaf folders only"
            )
        if subdirs:
            for sub in subdirs:
                visit(sub, (*prefix, sub.name))
        elif prefix:
            if not any(p.is_file() for p in children):
                raise HierarchyError(f"empty node {'/'.join(prefix)!r}: folder has no files")
            paths.append(prefix)

    visit(root, ())
    if not paths:
        raise HierarchyError(f"image folder {root} has no class folders")
    depth = len(paths[0])
    return Hierarchy(
        name=name or root.name,
        level_names=tuple(f"level{i}" for i in range(depth)),
        paths=tuple(paths),
    )


def read_image_folder(
    root: str | Path,
    image_size: int,
    channels: int,
    hierarchy: Hierarchy | None = None,
    workers: int = 4,
) -> SourceImages:
    """Images in ``root/<level1>/.../<leaf>/*``: the folders are the tree.

    Args:
        root: top folder.
        image_size: images are resized to ``image_size`` x ``image_size``.
        channels: 1 (grayscale) or 3 (RGB); every image is converted to it.
        hierarchy: a tree to label against; by default the folder tree itself.
        workers: decoding threads.

    Returns:
        The images; files that are not images or cannot be decoded are in ``skipped``.
    """
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    root = Path(root)
    candidates, tree, skipped = image_folder_files(root, hierarchy)
    decoded = decode_files([p for p, _ in candidates], image_size, channels, workers)
    images, labels = [], []
    for (path, leaf), result in zip(candidates, decoded, strict=True):
        if isinstance(result, str):
            skipped.append(SkippedFile(str(path.relative_to(root)), result))
        else:
            images.append(result)
            labels.append(leaf)
    if not images:
        raise DatasetError(f"no readable images under {root} ({len(skipped)} files skipped)")
    return SourceImages(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        hierarchy=tree,
        test_mask=None,
        location=str(root),
        skipped=skipped,
    )


def image_folder_files(
    root: Path, hierarchy: Hierarchy | None = None
) -> tuple[list[tuple[Path, int]], Hierarchy, list[SkippedFile]]:
    """The image files of a folder tree with their leaf labels, without decoding any.

    Returns:
        ``(path, leaf)`` per image file (sorted by path), the tree, and the files left out.
    """
    tree_of_folders = folder_tree(root)
    tree = hierarchy or tree_of_folders
    leaf_dirs = {root.joinpath(*p): i for i, p in enumerate(tree_of_folders.paths)}
    if hierarchy is not None:
        leaf_dirs = {d: _map_leaf(tree, tree_of_folders.paths[i], d) for d, i in leaf_dirs.items()}
    candidates: list[tuple[Path, int]] = []
    skipped: list[SkippedFile] = []
    for path in visible_files(root):
        rel = path.relative_to(root)
        leaf = leaf_dirs.get(path.parent)
        if leaf is None:
            skipped.append(SkippedFile(str(rel), "not inside a leaf folder"))
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(SkippedFile(str(rel), f"not an image file (suffix {path.suffix!r})"))
        else:
            candidates.append((path, leaf))
    return candidates, tree, skipped


def _map_leaf(tree: Hierarchy, folder_path: tuple[str, ...], where: Path) -> int:
    if tuple(folder_path) not in tree.paths:
        raise HierarchyError(
            f"folder {where} is the path {'/'.join(folder_path)!r}, which is not a leaf path of "
            f"tree {tree.name!r}"
        )
    return tree.paths.index(tuple(folder_path))


# --------------------------------------------------------------------------- fingerprints
def source_fingerprint(source: str, data_dir: str | Path) -> str:
    """A cheap fingerprint of the files a source would read (names, sizes, mtimes).

    Passed to the ingestion step as a parameter so that its cache is invalidated when the files
    change, without hashing their content on every run.
    """
    data_dir = Path(data_dir)
    if source == "fashion-mnist":
        files = [find_fashion_mnist_file(data_dir, k) for k in FASHION_MNIST_FILES]
        files = [f for f in files if f is not None]
    elif source in ("cifar10", "cifar100"):
        files = sorted(p for p in data_dir.glob("cifar-*/*") if p.is_file())
    else:
        files = sorted(p for p in data_dir.rglob("*") if p.is_file()) if data_dir.is_dir() else []
    h = hashlib.sha256(source.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    """CLI: ``fetch-fashion-mnist --data-dir DIR [--no-download]``."""
    parser = argparse.ArgumentParser(prog="python -m models.data.sources")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch-fashion-mnist", help="put Fashion-MNIST under DIR")
    fetch.add_argument("--data-dir", default="data")
    fetch.add_argument("--no-download", action="store_true")
    args = parser.parse_args(argv)
    try:
        where = fetch_fashion_mnist(
            args.data_dir,
            allow_download=not args.no_download and not os.environ.get("HIERGAN_OFFLINE"),
        )
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"Fashion-MNIST ready in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
