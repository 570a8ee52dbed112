"""Out-of-distribution image sets the project builds offline, for a clothing classifier.

What a user could plausibly send instead of a garment: noise, a blank or smooth frame, the
training images inverted (a negative, a scan with the wrong polarity), handwritten digits (the
8x8 digits scikit-learn ships, laid out as MNIST is: MNIST itself is not packaged offline),
typed letters and digits, crops of photographs, faces and scanned documents (the sample images
scikit-image ships). Each set is uint8 ``[N, size, size, channels]``; sets whose package is
missing are left out, with the reason, rather than faked.
"""

from __future__ import annotations

import string
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PHOTOS = (
    "astronaut",
    "camera",
    "cat",
    "coffee",
    "rocket",
    "coins",
    "clock",
    "moon",
    "hubble_deep_field",
    "immunohistochemistry",
    "brick",
    "grass",
    "gravel",
    "retina",
    "colorwheel",
)
DOCUMENTS = ("page", "text")
SETS = (
    "noise",
    "smooth_noise",
    "flat",
    "inverted",
    "digits",
    "glyphs",
    "photos",
    "faces",
    "documents",
)


def _resize(gray: np.ndarray, size: int) -> np.ndarray:
    """A 2-D uint8 image resized to ``size x size`` (antialiased)."""
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.LANCZOS))


def _gray(image: np.ndarray) -> np.ndarray:
    """Any scikit-image sample as 2-D uint8."""
    x = np.asarray(image)
    if x.dtype == bool:
        x = x.astype(np.uint8) * 255
    elif x.dtype != np.uint8:
        x = np.clip(x / max(float(x.max()), 1e-12) * 255, 0, 255).astype(np.uint8)
    if x.ndim == 3:
        x = np.asarray(Image.fromarray(x[..., :3]).convert("L"))
    return x


def _crops(sources: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random square crops (10 %-60 % of the shorter side) of 2-D images, resized."""
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        src = sources[rng.integers(len(sources))]
        short = min(src.shape)
        side = int(rng.integers(max(size, short // 10), max(size + 1, int(short * 0.6))))
        r = int(rng.integers(0, src.shape[0] - side + 1))
        c = int(rng.integers(0, src.shape[1] - side + 1))
        out[i] = _resize(np.ascontiguousarray(src[r : r + side, c : c + side]), size)
    return out


def noise(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """Uniform i.i.d. pixel noise."""
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8)


def smooth_noise(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """Low-frequency noise: a 4x4 to 7x7 random grid upsampled, stretched to 0-255."""
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        k = int(rng.integers(4, 8))
        grid = rng.random((k, k))
        img = np.asarray(
            Image.fromarray((grid * 255).astype(np.uint8)).resize(
                (size, size), Image.Resampling.BICUBIC
            ),
            np.float32,
        )
        lo, hi = img.min(), img.max()
        out[i] = ((img - lo) / max(hi - lo, 1) * 255).astype(np.uint8)
    return out


def flat(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """A blank frame: one grey level per image with a faint gradient and sensor noise."""
    level = rng.uniform(0, 255, (n, 1, 1))
    ramp = np.linspace(-1, 1, size)[None, None, :] * rng.uniform(-12, 12, (n, 1, 1))
    img = level + ramp + rng.normal(0, 2, (n, size, size))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def inverted(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """In-distribution images as negatives (``255 - x``), first channel."""
    idx = rng.choice(len(reference), min(n, len(reference)), replace=False)
    return 255 - reference[idx, :, :, 0]


def digits(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """scikit-learn's handwritten 8x8 digits, white on black, the digit in the centre 20/28."""
    from sklearn.datasets import load_digits

    data = load_digits().images  # [1797, 8, 8] in 0..16
    idx = rng.choice(len(data), min(n, len(data)), replace=False)
    inner = max(4, round(size * 20 / 28))
    pad = (size - inner) // 2
    out = np.zeros((len(idx), size, size), np.uint8)
    for j, i in enumerate(idx):
        digit = (data[i] / 16 * 255).astype(np.uint8)
        out[j, pad : pad + inner, pad : pad + inner] = np.asarray(
            Image.fromarray(digit).resize((inner, inner), Image.Resampling.BICUBIC)
        )
    return out


def glyphs(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """Typed letters and digits (Pillow's built-in font), white on black, random size and place."""
    chars = string.ascii_letters + string.digits
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        canvas = Image.new("L", (size, size), 0)
        font = ImageFont.load_default(size=float(rng.uniform(0.5, 0.9) * size))
        draw = ImageDraw.Draw(canvas)
        char = chars[rng.integers(len(chars))]
        left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
        x = (size - (right - left)) / 2 - left + rng.uniform(-2, 2)
        y = (size - (bottom - top)) / 2 - top + rng.uniform(-2, 2)
        draw.text((x, y), char, fill=int(rng.integers(180, 256)), font=font)
        out[i] = np.asarray(canvas)
    return out


def photos(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """Crops of scikit-image's sample photographs (scenes, objects, textures), grey."""
    from skimage import data

    return _crops([_gray(getattr(data, name)()) for name in PHOTOS], n, size, rng)


def faces(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """scikit-image's 200 face crops (Labeled Faces in the Wild), resized."""
    from skimage import data

    faces_ = data.lfw_subset()
    idx = rng.choice(len(faces_), min(n, len(faces_)), replace=False)
    return np.stack([_resize(_gray(faces_[i]), size) for i in idx])


def documents(n: int, size: int, rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """Crops of scikit-image's scanned page and text samples."""
    from skimage import data

    return _crops([_gray(getattr(data, name)()) for name in DOCUMENTS], n, size, rng)


BUILDERS: dict[str, Callable[[int, int, np.random.Generator, np.ndarray], np.ndarray]] = {
    "noise": noise,
    "smooth_noise": smooth_noise,
    "flat": flat,
    "inverted": inverted,
    "digits": digits,
    "glyphs": glyphs,
    "photos": photos,
    "faces": faces,
    "documents": documents,
}


def build_ood_sets(
    reference: np.ndarray,
    n: int = 1000,
    seed: int = 0,
    names: tuple[str, ...] = SETS,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The named OOD sets at the reference images' size and channels.

    Args:
        reference: in-distribution uint8 ``[N, H, W, C]`` images (test split): their shape, and
            the source of ``inverted``.
        n: images per set (fewer where the source has fewer: faces 200, digits 1,797).
        seed: every set is a function of it.
        names: which sets.

    Returns:
        ``{name: uint8 [n, H, W, C]}`` and ``{name: why it is missing}`` for sets whose package
        could not be imported.
    """
    size, channels = reference.shape[1], reference.shape[3]
    sets, missing = {}, {}
    for k, name in enumerate(names):
        rng = np.random.default_rng([seed, k])
        try:
            gray = BUILDERS[name](n, size, rng, reference)
        except ImportError as err:
            missing[name] = f"{err.name or err} is not installed"
            continue
        sets[name] = (
            np.repeat(gray[..., None], channels, axis=3) if channels > 1 else gray[..., None]
        )
    return sets, missing
