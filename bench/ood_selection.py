"""Choose the served OOD scorer on images that ``bench/ood_detection.py`` never shows it.

The detection bench's sets (noise, blank frames, digits, glyphs, photos, faces, documents, a
held-out Sandal) are what the guard is judged on; choosing the default scorer by them would tune
it to the bench. This bench builds other images a user could send to a clothing classifier —
pen scribbles, drawn shapes, text in a TrueType font, soft blobs, a blank surface under uneven
light, barcode-like stripes — and, with ``--heldout-dir``, a class held out of training other
than the detection bench's (default Shirt: trained by
``bench/ood_detection.py --train-heldout --heldout-class Shirt``). The in-distribution side is
the second half of the val split; the guard is fitted on the train split and its first half (the
test split stays unseen here).

    python bench/ood_selection.py --model-dir DIR --gan-dir DIR [--heldout-dir DIR]

Writes ``ood_selection.md`` / ``.json`` under ``--out``; prints the headline JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from bench.ood_detection import (  # noqa: E402
    add_guard_flags,
    evaluate_model,
    guard_setting,
    heldout_data,
    table_cell,
)
from models.classifier.io import TrainedClassifier  # noqa: E402
from models.data.ingest import DatasetConfig, build_dataset  # noqa: E402
from models.gan.io import TrainedGan  # noqa: E402
from models.ood import SCORERS  # noqa: E402

SIZE = 28
CANVAS = 112  # drawn at 4x, then reduced: anti-aliased strokes like a scanned drawing


def _reduced(canvas: Image.Image) -> np.ndarray:
    return np.asarray(canvas.resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.uint8)


def scribbles(rng: np.random.Generator) -> np.ndarray:
    """Two to five pen strokes, each a polyline of three to six points, light on black."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 6)):
        points = [tuple(p) for p in rng.integers(8, CANVAS - 8, (rng.integers(3, 7), 2))]
        draw.line(points, fill=int(rng.integers(150, 256)), width=int(rng.integers(4, 13)))
    return _reduced(canvas)


def shapes(rng: np.random.Generator) -> np.ndarray:
    """One to three ellipses, rectangles or triangles, filled or outlined, in random greys."""
    canvas = Image.new("L", (CANVAS, CANVAS), int(rng.integers(0, 60)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(1, 4)):
        x0, y0 = rng.integers(0, CANVAS // 2, 2)
        x1, y1 = x0 + rng.integers(20, CANVAS // 2), y0 + rng.integers(20, CANVAS // 2)
        grey, filled = int(rng.integers(80, 256)), bool(rng.integers(0, 2))
        kind = rng.integers(0, 3)
        style = {"fill": grey} if filled else {"outline": grey, "width": int(rng.integers(3, 9))}
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), **style)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), **style)
        else:
            draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], **style)
    return _reduced(canvas)


def text(rng: np.random.Generator) -> np.ndarray:
    """One to three letters or digits in Pillow's TrueType default font, light on dark."""
    canvas = Image.new("L", (CANVAS, CANVAS), int(rng.integers(0, 40)))
    draw = ImageDraw.Draw(canvas)
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabdefghkmnpqrstwxyz0123456789&?%"
    letters = "".join(rng.choice(list(alphabet), int(rng.integers(1, 4))))
    font = ImageFont.load_default(size=float(rng.integers(40, 90)))
    draw.text(
        (int(rng.integers(0, 30)), int(rng.integers(0, 30))),
        letters,
        int(rng.integers(160, 256)),
        font,
    )
    return _reduced(canvas)


def blobs(rng: np.random.Generator) -> np.ndarray:
    """One to four soft Gaussian blobs: smooth, object-sized, not clothing."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    image = np.zeros((SIZE, SIZE))
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.uniform(4, SIZE - 4, 2)
        sy, sx = rng.uniform(2, 8, 2)
        image += rng.uniform(0.4, 1.0) * np.exp(-((yy - cy) ** 2 / sy**2 + (xx - cx) ** 2 / sx**2))
    image = Image.fromarray((255 * image / image.max()).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(0.5)), dtype=np.uint8)


def gradients(rng: np.random.Generator) -> np.ndarray:
    """A blank surface under uneven light: a linear ramp between two greys, with sensor noise."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64) / (SIZE - 1)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    dark, light = rng.uniform(0, 90), rng.uniform(120, 255)
    image = dark + (light - dark) * ramp + rng.normal(0, rng.uniform(1, 6), (SIZE, SIZE))
    return np.clip(image, 0, 255).round().astype(np.uint8)


def stripes(rng: np.random.Generator) -> np.ndarray:
    """A barcode or a woven check: bars of random widths, at a random angle, light on dark."""
    canvas = Image.new("L", (CANVAS, CANVAS), int(rng.integers(0, 50)))
    draw = ImageDraw.Draw(canvas)
    grey = int(rng.integers(140, 256))
    for vertical in (True, bool(rng.integers(0, 2))):  # a second, crossing set half the time
        pos = int(rng.integers(0, 12))
        while pos < CANVAS:
            width = int(rng.integers(3, 14))
            box = (pos, 0, pos + width, CANVAS) if vertical else (0, pos, CANVAS, pos + width)
            draw.rectangle(box, fill=grey)
            pos += width + int(rng.integers(3, 18))
    return _reduced(canvas.rotate(float(rng.uniform(-45, 45)), Image.Resampling.BILINEAR))


DRAWN = {
    "scribbles": scribbles,
    "shapes": shapes,
    "text": text,
    "blobs": blobs,
    "gradients": gradients,
    "stripes": stripes,
}


def drawn_sets(n: int, seed: int) -> dict[str, np.ndarray]:
    """``{name: uint8 [n, 28, 28, 1]}``, each a function of ``seed``."""
    out = {}
    for offset, (name, draw) in enumerate(DRAWN.items()):
        rng = np.random.default_rng(seed + offset)
        out[name] = np.stack([draw(rng) for _ in range(n)])[..., None]
    return out


def selection_splits(data: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train as it is; the val split's first half fits, its second half is in-distribution."""
    val_x, val_y = data["val"]
    half = len(val_x) // 2
    return {
        "train": data["train"],
        "val": (val_x[:half], val_y[:half]),
        "test": (val_x[half:], val_y[half:]),
    }


def main() -> None:
    """Fit the guard, score the drawn sets (and a held-out class), write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--gan-dir", required=True, help="its GAN (the realness scorer's D)")
    parser.add_argument("--heldout-dir", help="a model trained without --heldout-class")
    parser.add_argument("--heldout-class", default="Shirt")
    parser.add_argument("--set-size", type=int, default=1000)
    parser.add_argument("--fit-images", type=int, default=20000)
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    add_guard_flags(parser)
    args = parser.parse_args()
    data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
    splits = {s: data.split(s) for s in ("train", "val")}
    classifier = TrainedClassifier.load(args.model_dir)
    discriminator = TrainedGan.load(args.gan_dir).discriminator()
    sets = drawn_sets(args.set_size, seed=101)
    result = evaluate_model(classifier, discriminator, selection_splits(splits), None, sets, args)
    if args.heldout_dir:
        held_splits, _, held_images = heldout_data(data, args.heldout_class)
        held = evaluate_model(
            TrainedClassifier.load(Path(args.heldout_dir) / "classifier"),
            TrainedGan.load(Path(args.heldout_dir) / "gan").discriminator(),
            selection_splits(held_splits),
            None,
            {f"heldout_{args.heldout_class}": held_images},
            args,
        )
        result["rows"].update(held["rows"])
    summary = {
        s: min(row[s]["auroc"] for row in result["rows"].values())
        for s in SCORERS
        if all(s in row for row in result["rows"].values())
    }
    write(result, summary, args)
    print(json.dumps({"worst_auroc": summary}))


def write(result: dict[str, Any], summary: dict[str, float], args: argparse.Namespace) -> None:
    """``ood_selection.md`` (AUROC / FPR at 95 % TPR; share flagged) and ``.json``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ood_selection.json").write_text(
        json.dumps({"worst_auroc": summary, **result}, indent=1)
    )
    names = list(result["rows"])
    lines = [
        "# Choosing the served OOD scorer on images the detection bench does not contain\n",
        f"Machine: {machine()}. Command: `python bench/ood_selection.py {' '.join(sys.argv[1:])}`. "
        "In-distribution: the second half of the val split (the guard fitted on the train split "
        f"and the val split's first half); {args.set_size} drawn images per set. "
        "Each cell: AUROC / FPR at 95 % TPR; share flagged at the scorer's threshold. Rows "
        f"below the scorers are single components. The guard: {guard_setting(args)}.\n",
        "| scorer | " + " | ".join(names) + " | worst AUROC |",
        "|---" * (len(names) + 2) + "|",
    ]
    # the scorers, then the single components behind them (no threshold: no share flagged)
    for row in next(iter(result["rows"].values())):
        cells = [result["rows"][n][row] for n in names]
        worst = min(c["auroc"] for c in cells)
        lines.append(f"| {row} | " + " | ".join(table_cell(c) for c in cells) + f" | {worst:.4f} |")
    (out / "ood_selection.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
