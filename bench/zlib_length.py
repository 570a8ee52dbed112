"""Is the compiled zlib level-1 length zlib's own on every image, and what does it save?

The served score's complexity term reads ``8 * len(zlib.compress(image, 1))``;
``models/ood/deflate_length.py`` computes that length without writing the stream. This checks it
against this process's zlib on every Fashion-MNIST image (train and test), every OOD set the
project builds (``models/ood/sets.py``, grey and as colour) and generated inputs (noise at
several amplitudes, random walks, colour 32 x 32 crops), and times both one image at a time
(the served case), warm and right after reading a 32 MB buffer (as after a forward pass).
With ``--model-dir``, the served answer itself: the guarded model's ``static-int8`` predictor
answers each of 3 x 600 test images twice, in alternating order, once with the length computed
in the compiled score and once with zlib's call (one torch and one BLAS thread, as a worker).

    python bench/zlib_length.py [--quick] [--model-dir DIR] [--save NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from bench.paired_answers import answers_section, paired_answers, served_predictor  # noqa: E402
from models.data.sources import read_fashion_mnist  # noqa: E402
from models.ood.complexity import zlib_bits  # noqa: E402
from models.ood.deflate_length import zlib1_bits  # noqa: E402
from models.ood.sets import build_ood_sets  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def generated(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs no dataset holds: noise of 2-256 levels, random walks, in grey and colour."""
    sets = {}
    for levels in (2, 8, 64, 256):
        sets[f"noise {levels} levels"] = rng.integers(0, levels, (n, 28, 28, 1))
    sets["random walk"] = np.cumsum(rng.integers(-4, 5, (n, 28 * 28)), axis=1).reshape(n, 28, 28, 1)
    sets["colour noise 32 px"] = rng.integers(0, 256, (n, 32, 32, 3))
    return {k: (v % 256).astype(np.uint8) for k, v in sets.items()}


def mismatches(images: np.ndarray) -> int:
    """How many of uint8 ``[N, H, W, C]`` images the compiled length gets wrong."""
    wrong = 0
    for image in images:
        flat = np.ascontiguousarray(image).reshape(-1)
        wrong += zlib1_bits(flat) != zlib_bits(flat)
    return int(wrong)


def per_image_us(images: np.ndarray, length: Callable[[np.ndarray], int], cold: bool) -> float:
    """Median microseconds of ``length`` on one image; ``cold``: after reading 32 MB."""
    flush = np.ones(8 << 20, np.float32)
    times = []
    for image in images:
        flat = image.reshape(-1)
        if cold:
            flush.sum()
        start = time.perf_counter_ns()
        length(flat)
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e3


def length_answers(model_dir: str, test: np.ndarray, repeats: int) -> dict[str, Any]:
    """Paired served answers: the length computed in the compiled score vs zlib's call."""
    from models.ood.served_kernel import NO_LENGTH, ZLIB1_LENGTH

    predictor = served_predictor(model_dir)
    compiled = predictor._served._compiled
    if compiled._length != ZLIB1_LENGTH:
        raise SystemExit(f"{model_dir}: the compiled zlib length is not used for this model")

    def switch(new: bool) -> None:
        compiled._length = ZLIB1_LENGTH if new else NO_LENGTH

    return {"model": model_dir, **paired_answers(predictor, test, switch, repeats)}


def run(quick: bool, model_dir: str | None = None) -> dict[str, Any]:  # noqa: D103
    source = read_fashion_mnist(REPO / "data", allow_download=False)
    images = source.images[:2000] if quick else source.images
    test = source.images[source.test_mask][:600]
    rng = np.random.default_rng(0)
    ood, _ = build_ood_sets(source.images[source.test_mask], n=200 if quick else 2000)
    sets = {"Fashion-MNIST (train and test)": images, **ood}
    sets |= {f"{name} (colour)": np.repeat(v, 3, axis=3) for name, v in ood.items()}
    sets |= generated(200 if quick else 5000, rng)
    rows = [{"set": k, "images": len(v), "mismatches": mismatches(v)} for k, v in sets.items()]

    zlib1_bits(test[0].reshape(-1))  # compiled (or loaded) before timing
    timing = {
        f"{name}, {state}": round(per_image_us(test, fn, state == "cold"), 2)
        for state in ("warm", "cold")
        for name, fn in (("zlib.compress", zlib_bits), ("compiled", zlib1_bits))
    }
    result = {"rows": rows, "timing_us": timing, "zlib": zlib.ZLIB_RUNTIME_VERSION}
    if model_dir:
        result["answers"] = length_answers(model_dir, test, 1 if quick else 3)
    return result


def save(result: dict[str, Any], name: str) -> None:
    """``bench/results/<name>.md`` and ``.json``."""
    result = {
        **result,
        "machine": machine(),
        "command": " ".join(["bench/zlib_length.py", *sys.argv[1:]]),
    }
    out = REPO / "bench" / "results"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = "".join(f"| {r['set']} | {r['images']} | {r['mismatches']} |\n" for r in result["rows"])
    times = "".join(f"| {k} | {v:.2f} |\n" for k, v in result["timing_us"].items())
    total = sum(r["images"] for r in result["rows"])
    answers = result.get("answers")
    wrong = sum(r["mismatches"] for r in result["rows"])
    (out / f"{name}.md").write_text(
        "# The compiled zlib level-1 length against zlib\n\n"
        f"Machine: {result['machine']}; zlib {result['zlib']}. "
        f"Command: `python {result['command']}`\n\n"
        f"**{wrong} of {total} images differ** (the compiled length of "
        "`models/ood/deflate_length.py` vs `8 * len(zlib.compress(bytes, 1))`).\n\n"
        f"| set | images | lengths that differ |\n|---|---|---|\n{rows}\n"
        "One image at a time, 600 test images, median microseconds (cold: after reading a "
        "32 MB buffer, as a forward pass leaves the caches):\n\n"
        f"| length | us |\n|---|---|\n{times}"
        + (answers_section(answers, "the length compiled", "zlib's call") if answers else "")
    )


def main() -> None:  # noqa: D103 - the module docstring says it all
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 dataset images, small sets")
    parser.add_argument("--model-dir", help="a guarded classifier: time its served answers too")
    parser.add_argument("--save", metavar="NAME", help="write bench/results/NAME.md and .json")
    args = parser.parse_args()
    result = run(args.quick, args.model_dir)
    print(json.dumps(result))
    if args.save:
        save(result, args.save)


if __name__ == "__main__":
    main()
