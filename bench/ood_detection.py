"""Out-of-distribution detection: AUROC and FPR at 95 % TPR per scorer, per OOD set.

In-distribution: the Fashion-MNIST test split (never seen by the fit: the Gaussians are fitted on
the train split, standardisation and threshold on the val split). OOD sets (built offline,
``models/ood/sets.py``): noise, smooth noise, blank frames, inverted test images, handwritten
digits (scikit-learn's 8x8 digits laid out as MNIST; MNIST itself has no offline package here),
typed glyphs, photo crops, faces and document scans (scikit-image's samples) and, with
``--heldout-dir``, a class held out of training (a model trained on the other nine classes, see
``--train-heldout``). The served rows use the guard exactly as the service does (its threshold).

    python bench/ood_detection.py --quick
    python bench/ood_detection.py --model-dir DIR --gan-dir DIR [--heldout-dir DIR]
    python bench/ood_detection.py --train-heldout --heldout-dir DIR  # Sandal; ~11 min, 2 cores

Writes ``bench/results/ood.md`` and ``.json`` (full runs); the last line printed is one JSON
object with the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from models.classifier import ClassifierConfig  # noqa: E402
from models.classifier.io import TrainedClassifier  # noqa: E402
from models.data.ingest import DatasetConfig, build_dataset  # noqa: E402
from models.gan.io import TrainedGan  # noqa: E402
from models.ood import SCORERS, OodConfig, build_ood_sets, fit_guard, score_images  # noqa: E402
from models.ood.complexity import Compressor, PixelDensity  # noqa: E402
from models.ood.evaluate import auroc, fpr_at_tpr  # noqa: E402
from models.ood.fit import with_guard, with_scorer  # noqa: E402

# Rows of the table: the scorers (their served combination) and the components behind them.
EXTRA_COMPONENTS = (
    "rmd_neck_item",
    "rmd_trunk_item",
    "maha_trunk_item",
    "maha_trunk_category",
    "maha_neck_item",
    "maha_neck_group",
    "maha_neck_category",
)


def scorer_scores(guards: dict[str, Any], scored: Any) -> dict[str, np.ndarray]:
    """Each scorer's served score, from one pass's components."""
    comps = {k: torch.from_numpy(v) for k, v in scored.components.items()}
    out = {name: guard.combine(comps).numpy() for name, guard in guards.items()}
    out.update({c: scored.components[c] for c in EXTRA_COMPONENTS if c in scored.components})
    return out


def evaluate_model(
    classifier: TrainedClassifier,
    discriminator: torch.nn.Module | None,
    data: Any,
    keep_leaves: np.ndarray | None,
    sets: dict[str, np.ndarray],
    args: argparse.Namespace,
    save_to: str | None = None,
) -> dict[str, Any]:
    """Fit a guard per scorer (one pass each side), score test + sets; AUROC/FPR per scorer."""
    train_x, train_y = data["train"]
    val_x, _ = data["val"]
    test_x, _ = data["test"]
    config = served_config(args)

    base, val = fit_guard(classifier, discriminator, train_x, train_y, val_x, config)
    if save_to:  # the served model with its guard, for the drift and serving benchmarks
        with_guard(classifier, base).save(save_to)
    guards = {s: with_scorer(base, s, val.components, config.tpr) for s in SCORERS}
    reference = base  # every guard has the same Gaussians and discriminator
    model = classifier.build()
    started = time.perf_counter()
    test = score_images(classifier, reference, test_x, model)
    seconds = time.perf_counter() - started
    in_scores = scorer_scores(guards, test)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, images in sets.items():
        out_scores = scorer_scores(guards, score_images(classifier, reference, images, model))
        rows[set_name] = {
            s: {
                "auroc": round(auroc(in_scores[s], out_scores[s]), 4),
                "fpr95": round(fpr_at_tpr(in_scores[s], out_scores[s]), 4),
                "flagged": round(float((out_scores[s] > guards[s].threshold).mean()), 4)
                if s in guards
                else None,
            }
            for s in in_scores
        }
    flagged_in = {
        s: round(float((in_scores[s] > g.threshold).mean()), 4) for s, g in guards.items()
    }
    return {
        "rows": rows,
        "in_flagged": flagged_in,
        "thresholds": {s: g.threshold for s, g in guards.items()},
        "test_images": int(len(test_x)),
        "score_images_per_s": round(len(test_x) / seconds, 1),
    }


def served_config(args: argparse.Namespace) -> OodConfig:
    """The train pipeline's ``ood:`` settings; ``--scorer`` and the guard flags where given."""
    import yaml

    params = yaml.safe_load(Path("pipelines/configs/train.yaml").read_text())["parameters"]
    settings = params.get("ood", {}) | {"fit_images": args.fit_images, "device": "cpu"}
    for key in ("scorer", "pixel_density", "compressor", "knn_images"):
        if getattr(args, key, None):
            settings[key] = getattr(args, key)
    return OodConfig(**settings)


def knn_words(neighbours: int, knn_images: int, knn_leaves: int | None = None) -> str:
    """The kNN part's search in the results pages' words."""
    words = f"kNN distance to the k-th nearest of {knn_images} train images, k = {neighbours}"
    if knn_leaves is None:
        return words
    leaves = "leaf" if knn_leaves == 1 else f"{knn_leaves} leaves"
    return f"{words}, of those of the image's most probable {leaves} only"


def guard_setting(args: argparse.Namespace) -> str:
    """The complexity term's setting and the kNN search's in words, for the tables' headers."""
    config = served_config(args)
    return f"{config.pixel_density} pixel Gaussian, {config.compressor} length; " + knn_words(
        config.neighbours, config.knn_images, config.knn_leaves
    )


def add_guard_flags(parser: argparse.ArgumentParser) -> None:
    """``--pixel-density``, ``--compressor``, ``--knn-images``: instead of train.yaml's."""
    parser.add_argument("--pixel-density", choices=get_args(PixelDensity))
    parser.add_argument("--compressor", choices=get_args(Compressor))
    parser.add_argument("--knn-images", type=int, help="the kNN bank's train images")


def heldout_data(
    data: Any, leaf: str
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Any, np.ndarray]:
    """Splits without ``leaf`` (labels renumbered), the reduced tree, the held-out test images."""
    from models.tree.hierarchy import Hierarchy

    tree = data.hierarchy
    spec = tree.to_dict()
    held = tree.leaf_index(leaf)

    def prune(node: Any) -> Any:
        if isinstance(node, list):
            return [x for x in node if x != leaf]
        pruned = {k: prune(v) for k, v in node.items()}
        return {k: v for k, v in pruned.items() if v}

    spec["tree"] = prune(spec["tree"])
    spec["leaf_order"] = [x for x in spec["leaf_order"] if x != leaf]
    reduced = Hierarchy.from_dict(spec)
    mapping = np.array([reduced.leaf_index(n) if n != leaf else -1 for n in tree.leaves])
    splits = {}
    for name in ("train", "val", "test"):
        x, y = data.split(name)
        keep = y != held
        splits[name] = (x[keep], mapping[y[keep]])
    test_x, test_y = data.split("test")
    return splits, reduced, test_x[test_y == held]


def train_heldout(data: Any, leaf: str, directory: Path, args: argparse.Namespace) -> None:
    """GAN + classifier + temperatures on the nine other classes (the train.yaml profile)."""
    import yaml

    from models.calibration import calibrate
    from models.classifier import fit_classifier
    from models.gan.pretrain import PretrainGanConfig
    from models.gan.training import GanTrainer

    params = yaml.safe_load(Path("pipelines/configs/train.yaml").read_text())["parameters"]
    config = heldout_classifier_config(params, args)  # its errors before the GAN trains
    splits, tree, _ = heldout_data(data, leaf)
    train_x, train_y = splits["train"]
    gan_config = PretrainGanConfig(**params["gan"]).for_data(data.image_shape, tree.num_leaves)
    trainer = GanTrainer(gan_config, train_x, directory / "checkpoints", f"heldout-{leaf}")
    result = trainer.fit(resume=True)
    TrainedGan.from_networks(result.generator, result.discriminator, {"heldout": leaf}).save(
        directory / "gan"
    )
    fit = fit_classifier(
        config,
        gan_config.architecture,
        tree,
        train_x,
        train_y,
        discriminator_state=result.discriminator.state_dict(),
    )
    classifier = TrainedClassifier.from_model(fit.model, config, tree, {"heldout": leaf})
    calibrate(classifier, *splits["val"]).classifier.save(directory / "classifier")


def heldout_classifier_config(params: dict[str, Any], args: argparse.Namespace) -> ClassifierConfig:
    """train.yaml's ``classifier:`` with ``--heldout-epochs`` and ``--heldout-classifier``'s keys.

    Checked before anything trains: a pair that is not ``KEY=VALUE`` with a ``classifier:`` key,
    or a value the config refuses, exits naming it.
    """
    overrides: dict[str, Any] = {"epochs": args.heldout_epochs}
    for pair in args.heldout_classifier:
        key, sep, value = pair.partition("=")
        if not sep or key not in ClassifierConfig.model_fields:
            raise SystemExit(
                f"--heldout-classifier {pair!r}: expected KEY=VALUE with KEY one of the "
                "classifier: settings"
            )
        overrides[key] = value  # pydantic converts it ("0" -> 0.0 for label_smoothing)
    try:
        return ClassifierConfig(**(params["classifier"] | overrides))
    except ValueError as err:
        raise SystemExit(
            f"--heldout-classifier {' '.join(args.heldout_classifier)}: {err}"
        ) from None


def main() -> None:  # noqa: D103 - the module docstring says it all
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, same code path")
    parser.add_argument("--model-dir", default="/tmp/hiergan-default-classifier")
    parser.add_argument("--gan-dir", help="the GAN the classifier was initialised from (its D)")
    parser.add_argument("--heldout-dir", help="a model trained without --heldout-class")
    parser.add_argument("--heldout-class", default="Sandal")
    parser.add_argument("--train-heldout", action="store_true", help="train it into --heldout-dir")
    parser.add_argument(
        "--heldout-epochs",
        type=int,
        default=18,
        help="the held-out model's epochs; 30, as the served model's, gives the same guard "
        "AUROC on both held-out classes at 1.4x the time (ood_heldout_epochs_30_ab.md)",
    )
    parser.add_argument(
        "--heldout-classifier",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="train.yaml classifier: settings changed for --train-heldout (a training choice's "
        "effect on the held-out class), e.g. label_smoothing=0",
    )
    parser.add_argument("--fit-images", type=int, default=20000)
    parser.add_argument("--set-size", type=int, default=2000)
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    parser.add_argument("--save-guarded", help="save the model with its served guard here")
    parser.add_argument(
        "--scorer",
        choices=SCORERS,
        help="serve (and save) this scorer instead of train.yaml's ood.scorer, as that YAML "
        "would with it (e.g. knn_rmd, to measure its serving cost with bench/serve_load.py)",
    )
    add_guard_flags(parser)
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    started = time.perf_counter()
    data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
    if args.train_heldout:
        if not args.heldout_dir:
            sys.exit("--train-heldout needs --heldout-dir")
        train_heldout(data, args.heldout_class, Path(args.heldout_dir), args)
        print(
            json.dumps(
                {"trained": args.heldout_dir, "seconds": round(time.perf_counter() - started, 1)}
            )
        )
        return
    if args.quick:
        args.fit_images, args.set_size = 3000, 300
    classifier = TrainedClassifier.load(args.model_dir)
    discriminator = TrainedGan.load(args.gan_dir).discriminator() if args.gan_dir else None
    splits = {s: data.split(s) for s in ("train", "val", "test")}
    if args.quick:
        splits["test"] = tuple(a[:2000] for a in splits["test"])
        splits["val"] = tuple(a[:2000] for a in splits["val"])
    sets, missing = build_ood_sets(splits["test"][0], n=args.set_size, seed=1)
    result = evaluate_model(classifier, discriminator, splits, None, sets, args, args.save_guarded)
    if args.heldout_dir:
        held_splits, _, held_images = heldout_data(data, args.heldout_class)
        held_classifier = TrainedClassifier.load(Path(args.heldout_dir) / "classifier")
        held_d = TrainedGan.load(Path(args.heldout_dir) / "gan").discriminator()
        held = evaluate_model(
            held_classifier,
            held_d,
            held_splits,
            None,
            {f"heldout_{args.heldout_class}": held_images},
            args,
        )
        result["rows"].update(held["rows"])
        result["heldout_in_flagged"] = held["in_flagged"]
    result["missing_sets"] = missing
    summary = summarize(result, args)
    if not args.quick:
        write_results(result, summary, args)
    print(json.dumps(summary))


def summarize(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Headline: per scorer, the worst and mean AUROC over the sets, and flagged shares."""
    out: dict[str, Any] = {"quick": args.quick, "sets": list(result["rows"])}
    for scorer in SCORERS:
        values = [row[scorer]["auroc"] for row in result["rows"].values() if scorer in row]
        flagged = [row[scorer]["flagged"] for row in result["rows"].values() if scorer in row]
        if values:
            out[scorer] = {
                "min_auroc": min(values),
                "mean_auroc": round(float(np.mean(values)), 4),
                "min_flagged": min(flagged),
                "in_flagged": result["in_flagged"].get(scorer),
            }
    out["missing_sets"] = result["missing_sets"]
    return out


def table_cell(r: dict[str, Any]) -> str:
    """``AUROC / FPR at 95 % TPR; share flagged`` (no share for a component: no threshold)."""
    flag = f"; {r['flagged']:.1%}" if r["flagged"] is not None else ""
    return f"{r['auroc']:.4f} / {r['fpr95']:.3f}{flag}"


def write_results(
    result: dict[str, Any], summary: dict[str, Any], args: argparse.Namespace
) -> None:
    """``ood.md`` (one table) and ``ood.json``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ood.json").write_text(json.dumps({"summary": summary, **result}, indent=1))
    names = list(result["rows"])
    scorers = list(next(iter(result["rows"].values())))
    default = served_config(args).scorer
    lines = [
        "# Out-of-distribution detection: AUROC / FPR at 95 % TPR; share flagged when served\n",
        f"Machine: {machine()}. Command: `python bench/ood_detection.py {' '.join(sys.argv[1:])}`. "
        f"In-distribution: the Fashion-MNIST test split ({result['test_images']} images; for "
        "the held-out class, the model trained without it and the test split without it); "
        f"{args.set_size} images per OOD set (faces: 200); Gaussians and neighbours fitted on "
        f"{args.fit_images} train images, standardisation and threshold (95 % TPR) on the val "
        f"split. Each cell: AUROC / FPR at 95 % TPR; share flagged at the served threshold. "
        f"**{default}** is the served scorer; rows below the scorers are single components. "
        f"The guard: {guard_setting(args)}.\n",
        "| scorer | " + " | ".join(names) + " | worst AUROC |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for s in scorers:
        cells = [table_cell(result["rows"][n][s]) for n in names]
        worst = min(result["rows"][n][s]["auroc"] for n in names)
        name = f"**{s}**" if s == default else s
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {worst:.4f} |")
    lines += [
        "",
        "In-distribution test images flagged at the served threshold: "
        + ", ".join(f"{s} {v:.1%}" for s, v in result["in_flagged"].items())
        + ".",
    ]
    if "heldout_in_flagged" in result:
        lines.append(
            "The held-out-class model's own test images flagged: "
            + ", ".join(f"{s} {v:.1%}" for s, v in result["heldout_in_flagged"].items())
            + "."
        )
    if result["missing_sets"]:
        lines.append(f"Sets left out: {result['missing_sets']}.")
    (out / "ood.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
