r"""What the served OOD score's feature parts read: the image's neck features, or a variant of them.

The served default (``knn_rmd_complexity``) reads the neck's features twice: the kNN distance to
the training bank and the neck's relative Mahalanobis distance. This bench recomputes that score
with both parts fitted on, and reading, a variant of those features, the complexity part as
served, and compares each variant with the served features on every set of both OOD benches
(the cases of ``bench/ood_guard_ab.py``), paired:

- ``normalised``: each feature vector L2-normalised before the Gaussians are fitted and read
  (Mahalanobis++, Mueller & Hein 2025; the kNN part already compares directions);
- ``mirror-mean``: the mean of the image's features and its mirror image's. A model with
  mirror TTA computes both in its forward pass, so this variant would cost nothing served;
- ``knn-whitened``: the served features, the kNN part the Euclidean distance to the nearest bank
  image in the space the leaf Gaussians' tied precision whitens (``|P^1/2 (z - b)|``: the
  Mahalanobis distance to the nearest training image) instead of the cosine one. The Gaussian
  part is the served one.

Everything else is the served score's: the same fit images, bank, k, shrinkage, robust
standardisation and 95 % threshold on val. The ``served`` column is the guard's own score up to
float rounding (the kNN search here is one float32 pass).

    python bench/ood_feature_variants.py --model-dir DIR --gan-dir DIR \
        --heldout-dir DIR --shirt-dir DIR [--save NAME]

Writes ``<save>.md`` / ``.json`` under ``--out`` (``ood_feature_variants``); prints the headline
JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.functional import normalize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from bench.ood_detection import knn_words, served_config  # noqa: E402
from bench.ood_guard_ab import add_case_flags, cases, paired_difference  # noqa: E402
from models.classifier.io import TrainedClassifier  # noqa: E402
from models.data.ingest import DatasetConfig, build_dataset  # noqa: E402
from models.gan.io import TrainedGan  # noqa: E402
from models.ood import OodConfig, fit_guard, score_images  # noqa: E402
from models.ood.fit import (  # noqa: E402
    fit_gaussians,
    knn_bank_rows,
    robust_standardization,
    stratified_subset,
)
from models.ood.guard import BACKGROUND, OodGuard  # noqa: E402
from models.ood.scores import knn_distance, leaf_neighbours, min_mahalanobis  # noqa: E402

SERVED, VARIANTS = "served", ("normalised", "mirror-mean", "knn-whitened")
WHITENED = "knn-whitened"  # a variant of the kNN part's metric, not of the features
PROBE = OodGuard({}, None, "msp", ["msp"])  # a guard with nothing fitted: features only
Views = dict[str, np.ndarray]  # "own", "mirror": [N, D] neck features; "probs": leaf probs


def neck_views(
    classifier: TrainedClassifier, model: Any, images: np.ndarray, guard: OodGuard = PROBE
) -> tuple[Views, dict[str, np.ndarray]]:
    """The neck features of uint8 ``[N, H, W, C]`` images and their mirrors; ``guard``'s parts.

    One pass gives the image's own features, its leaf probabilities and the served parts of
    ``guard`` on it.
    """
    own = score_images(classifier, guard, images, model, every_component=False, keep_layers=True)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    mirror = score_images(classifier, PROBE, mirrored, model, keep_layers=True).layers["neck"]
    assert own.layers is not None
    views = {"own": own.layers["neck"], "mirror": mirror, "probs": own.leaf_probs}
    return views, own.components


def variant_features(variant: str, views: Views) -> torch.Tensor:
    """``[N, D]`` float32 features of one variant."""
    own = torch.from_numpy(views["own"]).float()
    if variant == "normalised":
        return normalize(own, dim=1)
    if variant == "mirror-mean":
        return (own + torch.from_numpy(views["mirror"]).float()) / 2
    return own


def feature_parts(
    fit: torch.Tensor,
    level_labels: torch.Tensor,
    bank: np.ndarray,
    tree: Any,
    config: OodConfig,
    bank_leaves: torch.Tensor,
    whitened: bool = False,
) -> Callable[[torch.Tensor, np.ndarray], dict[str, np.ndarray]]:
    """``(features, leaf probs) -> {"knn", "rmd_neck_<leaf level>"}``, fitted on ``fit``.

    The kNN part reads the bank images (``bank`` of ``fit``'s rows, of leaves ``bank_leaves``)
    as the served guard does (``config.knn_leaves``). ``whitened``: ``knn`` is the Euclidean
    distance to the k-th nearest bank image after both are multiplied by the leaf precision's
    square root, not 1 - their cosine.
    """
    leaf = tree.level_names[-1]
    means, precision = fit_gaussians(fit, level_labels, list(tree.level_names), config.shrinkage)[
        leaf
    ]
    everything = torch.zeros(len(fit), 1, dtype=torch.long)
    background = fit_gaussians(fit, everything, [BACKGROUND], config.shrinkage)[BACKGROUND]
    neighbours = normalize(fit[bank], dim=1)
    k = min(config.neighbours, len(neighbours))

    if whitened:
        values, vectors = torch.linalg.eigh(precision.double())
        root = ((vectors * values.clamp_min(0).sqrt()) @ vectors.T).float()  # P^1/2
        whitened_bank = fit[bank] @ root

    def parts(z: torch.Tensor, probs: np.ndarray) -> dict[str, np.ndarray]:
        rmd = min_mahalanobis(z, means, precision) - min_mahalanobis(z, *background)
        allowed = leaf_neighbours(bank_leaves, torch.from_numpy(probs), config.knn_leaves)
        if whitened:
            distances = torch.cdist(z @ root, whitened_bank)
            if allowed is not None:
                distances = distances.masked_fill(~allowed, torch.inf)
            knn = distances.topk(k, dim=1, largest=False).values[:, -1]
        else:
            knn = knn_distance(z, neighbours, k, allowed=allowed)
        return {f"rmd_neck_{leaf}": rmd.numpy(), "knn": knn.numpy()}

    return parts


def variant_scores(
    classifier: TrainedClassifier,
    discriminator: torch.nn.Module,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    sets: dict[str, np.ndarray],
    config: OodConfig,
) -> dict[str, tuple[dict[str, np.ndarray], float]]:
    """``{variant: ({"test": [N], set: [M] ...}, threshold)}``, the served features' included.

    Every part of the score but the two feature parts is the served guard's.
    """
    train_x, train_y = splits["train"]
    guard, _ = fit_guard(classifier, discriminator, train_x, train_y, splits["val"][0], config)
    model = classifier.build()
    idx = stratified_subset(train_y, config.fit_images, config.seed)
    bank = knn_bank_rows(train_y[idx], config)  # the guard's own bank
    bank_leaves = torch.from_numpy(train_y[idx][bank]).long()
    level_labels = torch.from_numpy(classifier.tree.all_level_labels(train_y[idx])).long()
    fit_views, _ = neck_views(classifier, model, train_x[idx])
    images = {"val": splits["val"][0], "test": splits["test"][0], **sets}
    scored = {name: neck_views(classifier, model, x, guard) for name, x in images.items()}
    out = {}
    for variant in (SERVED, *VARIANTS):
        fit = variant_features(variant, fit_views)
        parts = feature_parts(
            fit, level_labels, bank, classifier.tree, config, bank_leaves, variant == WHITENED
        )
        comps = {
            name: served | parts(variant_features(variant, views), views["probs"])
            for name, (views, served) in scored.items()
        }
        # the guard's own sum, standardised on this variant's val scores
        standardization = {p: robust_standardization(c) for p, c in comps["val"].items()}
        combined = replace(guard, standardization=standardization)
        scores = {name: combined.combine(c) for name, c in comps.items()}
        out[variant] = scores, float(np.quantile(scores.pop("val"), config.tpr))
    return out


def main() -> None:
    """Fit, score every variant, compare each with the served features; write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_flags(parser)
    parser.add_argument("--save", default="ood_feature_variants", help="the results' file name")
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    args = parser.parse_args()
    config = served_config(args).model_copy(update={"runtime_thresholds": []})
    if config.scorer != "knn_rmd_complexity":
        raise SystemExit(f"train.yaml serves {config.scorer}; this bench: knn_rmd_complexity")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
    rows = []
    for bench, model_dir, gan_dir, splits, sets in cases(data, args):
        classifier = TrainedClassifier.load(model_dir)
        discriminator = TrainedGan.load(gan_dir).discriminator()
        scored = variant_scores(classifier, discriminator, splits, sets, config)
        (served, threshold) = scored[SERVED]
        for name in sets:
            row: dict[str, Any] = {"bench": bench, "set": name}
            row["flagged"] = {
                v: round(float((s[name] > t).mean()), 4) for v, (s, t) in scored.items()
            }
            for variant in VARIANTS:
                row[variant] = paired_difference(
                    served, scored[variant][0], name, args.rounds, seed=len(rows)
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    write(rows, config, args)
    print(json.dumps({v: verdict(rows, v) for v in VARIANTS}))


def verdict(rows: list[dict[str, Any]], variant: str) -> dict[str, list[str]]:
    """The sets a variant separates better or worse than the served features (95 % intervals)."""
    return {
        "better_on": [r["set"] for r in rows if r[variant]["low"] > 0],
        "worse_on": [r["set"] for r in rows if r[variant]["high"] < 0],
    }


def write(rows: list[dict[str, Any]], config: OodConfig, args: argparse.Namespace) -> None:
    """``<save>.md`` and ``.json``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    verdicts = {v: verdict(rows, v) for v in VARIANTS}
    result = {"ood": config.model_dump(), "rows": rows, "verdicts": verdicts}
    (out / f"{args.save}.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# The OOD score's feature parts on variants of the neck's features\n",
        f"Machine: {machine()}. Command: `python bench/ood_feature_variants.py "
        f"{' '.join(sys.argv[1:])}`. `knn_rmd_complexity` recomputed with its kNN part ("
        f"{knn_words(config.neighbours, config.knn_images, config.knn_leaves)}) and its neck "
        "relative Mahalanobis part fitted on, and reading, each variant of the features; the "
        "complexity part, the fit images, standardisation and the 95 % threshold on val as "
        "served. In-distribution: the test split (detection bench) or the val split's second "
        "half (selection bench), each held-out class against its own model. Each variant - "
        f"served, with a 95 % interval from {args.rounds} paired bootstrap resamples.\n",
        "| bench | set | served | "
        + " | ".join(f"{v} | - served [95 %]" for v in VARIANTS)
        + f" | flagged ({' / '.join((SERVED, *VARIANTS))}) |",
        "|---|---|---|" + "---|---|" * len(VARIANTS) + "---|",
    ]
    for r in rows:
        cells = [f"{r[VARIANTS[0]]['a']:.4f}"]
        for v in VARIANTS:
            d = r[v]
            cells += [f"{d['b']:.4f}", f"{d['b_minus_a']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"]
        flagged = " / ".join(f"{r['flagged'][v]:.1%}" for v in (SERVED, *VARIANTS))
        lines.append(f"| {r['bench']} | {r['set']} | {' | '.join(cells)} | {flagged} |")
    lines += [""] + [
        f"`{v}`: better on {', '.join(d['better_on']) or 'none'}; "
        f"worse on {', '.join(d['worse_on']) or 'none'}."
        for v, d in verdicts.items()
    ]
    (out / f"{args.save}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
