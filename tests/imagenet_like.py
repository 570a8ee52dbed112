"""A generated ImageNet-style folder: ``train/<wnid>/*.JPEG`` and ``val/`` (flat + labels file).

Each class has its own colour and stripe direction, plus noise, so that the images are distinct
(no duplicates for the data checks) and a small network can tell the classes apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Real ImageNet-1k synsets: two dogs, a cat, two fish, two vehicles.
WNIDS = ["n02085620", "n02086240", "n02123045", "n01440764", "n01443537", "n04037443", "n02701002"]


def class_image(rng: np.random.Generator, cls: int, size: int) -> np.ndarray:
    """One ``[size, size, 3]`` uint8 image of class ``cls``."""
    hue = np.array([(cls * 67) % 256, (cls * 151 + 80) % 256, (cls * 29 + 160) % 256], float)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = np.sin((xx if cls % 2 else yy) * (0.3 + 0.1 * (cls % 3)) + rng.uniform(0, 6.28))
    img = hue[None, None, :] * (0.6 + 0.3 * stripes[..., None])
    img = img + rng.normal(0, 18, size=(size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_imagenet_like(
    root: Path,
    wnids: list[str] = WNIDS,
    per_class: int = 20,
    val_per_class: int = 6,
    size: int = 40,
    seed: int = 0,
    flat_val: bool = True,
) -> Path:
    """Write the folder and return ``root``; images are ``size`` px JPEGs."""
    rng = np.random.default_rng(seed)
    labels_lines = []
    for cls, wnid in enumerate(wnids):
        folder = root / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_image(rng, cls, size)).save(
                folder / f"{wnid}_{i}.JPEG", quality=90
            )
        for i in range(val_per_class):
            name = f"ILSVRC2012_val_{cls:03d}{i:05d}.JPEG"
            target = root / "val" if flat_val else root / "val" / wnid
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(class_image(rng, cls, size)).save(target / name, quality=90)
            labels_lines.append(f"{name} {wnid}")
    if flat_val:
        (root / "LOC_synset_labels.txt").write_text("")  # an unrelated file is ignored
        (root / "val_labels.txt").write_text("\n".join(labels_lines) + "\n")
    return root
