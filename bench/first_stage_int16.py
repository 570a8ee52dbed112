"""The kNN search's first stage read from int16 codes instead of float32: same scores, less time?

The served score's kNN part ranks a leaf's bank images by approximate products over 64
directions (``ProjectedProducts``), then computes the best candidates' float32 products. The
compiled score reads the leaf's directions as int16 codes with one float32 step per direction
(``served_statistics.first_stage_codes``): half the bytes after a forward pass. This scores
every Fashion-MNIST test image and every OOD set the project builds one image at a time, as
served, with the codes and with the float32 columns they replace, and counts the scores that
differ; then times the served answer with each (paired, ``bench/paired_answers.py``).

    python bench/first_stage_int16.py --model-dir DIR [--quick] [--save NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from bench.paired_answers import answers_section, paired_answers, served_predictor  # noqa: E402
from models.data.sources import read_fashion_mnist  # noqa: E402
from models.ood.sets import build_ood_sets  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(model_dir: str, quick: bool) -> dict[str, Any]:  # noqa: D103
    predictor = served_predictor(model_dir)
    compiled = predictor._served._compiled
    knn = predictor._served._knn
    projected_t = predictor.guard.coarse_search.projected_t.float().numpy()
    codes = (compiled._leaves, compiled._step)
    columns = [(np.ascontiguousarray(projected_t[:, rows]), rows) for _, rows in codes[0]]
    float32 = (columns, np.ones_like(codes[1]))
    if len(columns) != len(knn.leaf_rows):
        raise SystemExit(f"{model_dir}: the first stage is not searched by leaf")

    def switch(new: bool) -> None:
        compiled._leaves, compiled._step = codes if new else float32

    source = read_fashion_mnist(REPO / "data", allow_download=False)
    test = source.images[source.test_mask]
    ood, _ = build_ood_sets(test, n=200 if quick else 2000)
    sets = {"Fashion-MNIST test": test[:1000] if quick else test, **ood}
    rows = []
    for name, images in sets.items():
        scores = {}
        for new in (True, False):
            switch(new)
            scores[new] = np.array([predictor.scores(image[None])[1][0] for image in images])
        switch(True)
        differ = scores[True] != scores[False]
        rows.append(
            {
                "set": name,
                "images": len(images),
                "differ": int(differ.sum()),
                "largest_difference": float(np.abs(scores[True] - scores[False]).max()),
            }
        )
    answers = paired_answers(predictor, test[:600], switch, 1 if quick else 3)
    return {"rows": rows, "answers": {"model": model_dir, **answers}}


def save(result: dict[str, Any], name: str) -> None:
    """``bench/results/<name>.md`` and ``.json``."""
    command = " ".join(["bench/first_stage_int16.py", *sys.argv[1:]])
    result = {**result, "machine": machine(), "command": command}
    out = REPO / "bench" / "results"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = "".join(
        f"| {r['set']} | {r['images']} | {r['differ']} | {r['largest_difference']:.2g} |\n"
        for r in result["rows"]
    )
    total = sum(r["images"] for r in result["rows"])
    differ = sum(r["differ"] for r in result["rows"])
    (out / f"{name}.md").write_text(
        "# The kNN first stage from int16 codes vs float32 columns\n\n"
        f"Machine: {result['machine']}. Command: `python {result['command']}`\n\n"
        f"**{differ} of {total} served scores differ** (one image at a time, `static-int8`, the "
        "compiled score; the first stage ranks a leaf's bank images, the chosen candidates' "
        "products are float32 either way).\n\n"
        f"| set | images | scores that differ | largest difference |\n|---|---|---|---|\n{rows}"
        + answers_section(result["answers"], "int16 codes", "float32 columns")
    )


def main() -> None:  # noqa: D103 - the module docstring says it all
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a guarded classifier directory")
    parser.add_argument("--quick", action="store_true", help="1,000 test images, small sets")
    parser.add_argument("--save", metavar="NAME", help="write bench/results/NAME.md and .json")
    args = parser.parse_args()
    result = run(args.model_dir, args.quick)
    print(json.dumps(result))
    if args.save:
        save(result, args.save)


if __name__ == "__main__":
    main()
