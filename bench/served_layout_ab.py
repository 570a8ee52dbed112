"""A layout of the compiled served score against the one it replaced: same scores, less time?

The compiled one-image score (``models/ood/served_kernel.py``) reads what the guard's statistics
hold, laid out for the bytes it must read after a forward pass. Each layout is checked against
the one it replaced on every Fashion-MNIST test image and every OOD set the project builds,
scored one image at a time as served (the scores that differ, the largest difference, and the
verdicts against the served threshold that differ), then the served answer is timed with each
(paired, ``bench/paired_answers.py``). Settings (``--setting``):

- ``int16-codes``: the kNN first stage's directions as int16 codes with a float32 step each
  (``served_statistics.first_stage_codes``) vs the float32 columns (half the bytes).

A layout tried and not kept (Q of the quadratic form from its upper triangle, 338 -> 205 KB of
the matrix: -0.3 us per answer, paired) is in ``docs/benchmark_history.md``.

    python bench/served_layout_ab.py --model-dir DIR --setting NAME [--quick] [--save NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from bench.paired_answers import answers_section, paired_answers, served_predictor  # noqa: E402
from models.data.sources import read_fashion_mnist  # noqa: E402
from models.ood.sets import build_ood_sets  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TITLES = {  # each setting's new and old layout, in words
    "int16-codes": ("the first stage from int16 codes", "float32 columns"),
}


def layouts(predictor: Any, setting: str) -> tuple[tuple, tuple, Callable[[tuple], None]]:
    """The new and the old layout of ``setting`` and the function that sets one."""
    compiled = predictor._served._compiled
    if setting == "int16-codes":
        projected_t = predictor.guard.coarse_search.projected_t.float().numpy()
        new = (compiled._leaves, compiled._step)
        columns = [(np.ascontiguousarray(projected_t[:, rows]), rows) for _, rows in new[0]]
        old = (columns, np.ones_like(new[1]))

        def put(layout: tuple) -> None:
            compiled._leaves, compiled._step = layout

        return new, old, put
    raise SystemExit(f"unknown setting {setting!r}")


def run(model_dir: str, setting: str, quick: bool) -> dict[str, Any]:  # noqa: D103
    predictor = served_predictor(model_dir)
    new, old, put = layouts(predictor, setting)
    threshold = predictor.threshold

    def switch(use_new: bool) -> None:
        put(new if use_new else old)

    source = read_fashion_mnist(REPO / "data", allow_download=False)
    test = source.images[source.test_mask]
    ood, _ = build_ood_sets(test, n=200 if quick else 2000)
    sets = {"Fashion-MNIST test": test[:1000] if quick else test, **ood}
    rows = []
    for name, images in sets.items():
        scores = {}
        for use_new in (True, False):
            switch(use_new)
            scores[use_new] = np.array([predictor.scores(image[None])[1][0] for image in images])
        switch(True)
        differ = scores[True] != scores[False]
        rows.append(
            {
                "set": name,
                "images": len(images),
                "differ": int(differ.sum()),
                "largest_difference": float(np.abs(scores[True] - scores[False]).max()),
                "verdicts_differ": int(
                    np.sum((scores[True] > threshold) != (scores[False] > threshold))
                ),
            }
        )
    answers = paired_answers(predictor, test[:600], switch, 1 if quick else 3)
    return {"setting": setting, "rows": rows, "answers": {"model": model_dir, **answers}}


def save(result: dict[str, Any], name: str) -> None:
    """``bench/results/<name>.md`` and ``.json``."""
    command = " ".join(["bench/served_layout_ab.py", *sys.argv[1:]])
    result = {**result, "machine": machine(), "command": command}
    out = REPO / "bench" / "results"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = "".join(
        f"| {r['set']} | {r['images']} | {r['differ']} | {r['largest_difference']:.2g} "
        f"| {r['verdicts_differ']} |\n"
        for r in result["rows"]
    )
    total = sum(r["images"] for r in result["rows"])
    differ = sum(r["differ"] for r in result["rows"])
    verdicts = sum(r["verdicts_differ"] for r in result["rows"])
    new, old = TITLES[result["setting"]]
    (out / f"{name}.md").write_text(
        f"# The compiled served score: {new} vs {old}\n\n"
        f"Machine: {result['machine']}. Command: `python {result['command']}`\n\n"
        f"**{differ} of {total} served scores differ, {verdicts} verdicts** (one image at a time, "
        "`static-int8`, the compiled score, the served threshold).\n\n"
        "| set | images | scores that differ | largest difference | verdicts that differ |\n"
        f"|---|---|---|---|---|\n{rows}" + answers_section(result["answers"], new, old)
    )


def main() -> None:  # noqa: D103 - the module docstring says it all
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a guarded classifier directory")
    parser.add_argument("--setting", required=True, choices=sorted(TITLES))
    parser.add_argument("--quick", action="store_true", help="1,000 test images, small sets")
    parser.add_argument("--save", metavar="NAME", help="write bench/results/NAME.md and .json")
    args = parser.parse_args()
    result = run(args.model_dir, args.setting, args.quick)
    print(json.dumps(result))
    if args.save:
        save(result, args.save)


if __name__ == "__main__":
    main()
