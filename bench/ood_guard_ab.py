r"""Two settings of the served OOD guard side by side, paired: the same model, images and fit.

A setting is a few ``ood:`` keys (:class:`~models.ood.config.OodConfig`) over ``train.yaml``'s,
``--a pixel_density=full compressor=png`` / ``--b knn_images=2500``. The bench fits the guard
once per setting on the same model and images, scores the same images with both, and compares
the served scorer (``train.yaml``'s, or ``--scorer``) on every set of both OOD benches: the
detection bench's sets, the selection bench's drawn sets, and each held-out class with its own
model. Each difference comes with a 95 % interval from a paired bootstrap (the same resampled
in- and out-of-distribution images for both settings), so that "the same detection" is a
measured statement, not a reading of the fourth decimal.

Made for the complexity term's two settings (``ood_pixel_ab.md``: ``full`` covariance + PNG
size, Serrà et al.'s compressor, against ``diagonal`` + zlib level 1, a third of the serving
cost; those are the defaults of ``--a`` and ``--b``), and used for the kNN bank's size since.

The B side can also read other models (``--b-model-dir``, ``--b-heldout-dir``, ``--b-shirt-dir``:
a training choice, measured on the same images; ``--a`` and ``--b`` with no pairs are both
``train.yaml``'s settings). The bootstrap then pairs the images, not the fits.

    python bench/ood_guard_ab.py --model-dir DIR --gan-dir DIR \
        --heldout-dir DIR [--heldout-class Sandal] --shirt-dir DIR [--shirt-class Shirt] \
        [--scorer NAME] [--a KEY=VALUE ...] [--b KEY=VALUE ...] [--save NAME] \
        [--b-model-dir DIR --b-heldout-dir DIR --b-shirt-dir DIR]

Writes ``<save>.md`` / ``.json`` under ``--out`` (``ood_guard_ab`` unless named; ``--save
ood_pixel_ab`` for the committed page of the defaults); prints the headline JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from bench.ood_detection import heldout_data, served_config  # noqa: E402
from bench.ood_selection import drawn_sets, selection_splits  # noqa: E402
from models.classifier.io import TrainedClassifier  # noqa: E402
from models.data.ingest import DatasetConfig, build_dataset  # noqa: E402
from models.gan.io import TrainedGan  # noqa: E402
from models.ood import SCORERS, build_ood_sets, fit_guard, score_images  # noqa: E402
from models.ood.config import OodConfig  # noqa: E402
from models.ood.evaluate import auroc  # noqa: E402

# the complexity term's settings this bench was made for (ood_pixel_ab.md)
DEFAULT_A = ["pixel_density=full", "compressor=png"]
DEFAULT_B = ["pixel_density=diagonal", "compressor=zlib"]


def parse_setting(pairs: list[str]) -> dict[str, str]:
    """``["knn_images=2500"]`` -> ``{"knn_images": "2500"}``; each key must be an ``ood:`` key."""
    setting = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in OodConfig.model_fields:
            raise SystemExit(f"{pair!r}: expected KEY=VALUE with KEY one of the ood: settings")
        if key == "scorer":  # both sides serve one scorer: the table compares its settings
            raise SystemExit(f"{pair!r}: the scorer is --scorer's, the same for A and B")
        setting[key] = value
    return setting


def setting_config(args: argparse.Namespace, setting: dict[str, str]) -> OodConfig:
    """``train.yaml``'s ``ood:`` settings with ``setting``'s keys over them, validated."""
    base = served_config(args).model_dump() | {"runtime_thresholds": []}
    try:
        return OodConfig.model_validate(base | setting)
    except ValueError as err:
        raise SystemExit(f"{setting_name(setting)}: {err}") from None


def setting_name(setting: dict[str, str]) -> str:
    """``"pixel_density=full, compressor=png"``: a setting in the table's words."""
    return ", ".join(f"{k}={v}" for k, v in setting.items())


def served_scores(
    classifier: TrainedClassifier,
    discriminator: torch.nn.Module,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    sets: dict[str, np.ndarray],
    config: OodConfig,
) -> tuple[dict[str, np.ndarray], float]:
    """``({"test": [N], set: [M] ...}, threshold)``: the served score under one setting."""
    guard, _ = fit_guard(classifier, discriminator, *splits["train"], splits["val"][0], config)
    model = classifier.build()
    images = {"test": splits["test"][0], **sets}
    scores = {
        name: score_images(classifier, guard, x, model, every_component=False).score
        for name, x in images.items()
    }
    return scores, guard.threshold


def paired_difference(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], name: str, rounds: int, seed: int
) -> dict[str, float]:
    """AUROC of each setting on ``name`` against test, and B - A with a paired 95 % interval."""
    rng = np.random.default_rng(seed)
    n_in, n_out = len(a["test"]), len(a[name])
    diffs = []
    for _ in range(rounds):
        i, j = rng.integers(0, n_in, n_in), rng.integers(0, n_out, n_out)
        diffs.append(auroc(b["test"][i], b[name][j]) - auroc(a["test"][i], a[name][j]))
    auc_a, auc_b = auroc(a["test"], a[name]), auroc(b["test"], b[name])
    low, high = np.quantile(diffs, [0.025, 0.975])
    return {
        "a": round(auc_a, 4),
        "b": round(auc_b, 4),
        "b_minus_a": round(auc_b - auc_a, 4),
        "low": round(float(low), 4),
        "high": round(float(high), 4),
    }


def cases(data: Any, args: argparse.Namespace) -> list[tuple[str, str, str, Any, dict]]:
    """``(bench, model dir, gan dir, splits, sets)`` for every comparison this run makes."""
    splits = {s: data.split(s) for s in ("train", "val", "test")}
    detection, _ = build_ood_sets(splits["test"][0], n=args.set_size, seed=1)
    selection = selection_splits({s: splits[s] for s in ("train", "val")})
    out = [
        ("detection", args.model_dir, args.gan_dir, splits, detection),
        ("selection", args.model_dir, args.gan_dir, selection, drawn_sets(1000, seed=101)),
    ]
    for bench, directory, leaf in (
        ("detection", args.heldout_dir, args.heldout_class),
        ("selection", args.shirt_dir, args.shirt_class),
    ):
        if directory:
            held_splits, _, held_images = heldout_data(data, leaf)
            if bench == "selection":
                held_splits = selection_splits(held_splits)
            model_dir, gan_dir = str(Path(directory) / "classifier"), str(Path(directory) / "gan")
            out.append((bench, model_dir, gan_dir, held_splits, {f"heldout_{leaf}": held_images}))
    return out


def b_side_models(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """The B side's ``(model dir, gan dir)`` for each case's A model dir (:func:`cases`' names).

    The A side's own where no ``--b-*`` flag names another; a B model without its A side exits
    naming both flags.
    """
    for a_flag, b_flag in (("heldout_dir", "b_heldout_dir"), ("shirt_dir", "b_shirt_dir")):
        if getattr(args, b_flag) and not getattr(args, a_flag):
            b_name, a_name = ("--" + flag.replace("_", "-") for flag in (b_flag, a_flag))
            raise SystemExit(f"{b_name} needs {a_name}: B is compared with A's model")
    b_side = {args.model_dir: (args.b_model_dir or args.model_dir, args.gan_dir)}
    for a_dir, b_dir in (
        (args.heldout_dir, args.b_heldout_dir),
        (args.shirt_dir, args.b_shirt_dir),
    ):
        if a_dir:
            root = Path(b_dir or a_dir)
            b_side[str(Path(a_dir) / "classifier")] = (str(root / "classifier"), str(root / "gan"))
    return b_side


def add_case_flags(parser: argparse.ArgumentParser) -> None:
    """The models, sets and bootstrap of :func:`cases` and :func:`paired_difference`."""
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--gan-dir", required=True)
    parser.add_argument("--heldout-dir", help="a model trained without --heldout-class")
    parser.add_argument("--heldout-class", default="Sandal")
    parser.add_argument("--shirt-dir", help="a model trained without --shirt-class (selection)")
    parser.add_argument("--shirt-class", default="Shirt")
    parser.add_argument("--set-size", type=int, default=2000)
    parser.add_argument("--fit-images", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=300, help="bootstrap resamples")


def main() -> None:
    """Fit per setting, score, compare; write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_flags(parser)
    parser.add_argument("--scorer", choices=SCORERS, help="default: train.yaml's")
    parser.add_argument("--a", nargs="*", default=DEFAULT_A, metavar="KEY=VALUE")
    parser.add_argument("--b", nargs="*", default=DEFAULT_B, metavar="KEY=VALUE")
    parser.add_argument("--b-model-dir", help="B's default-profile model (default: A's)")
    parser.add_argument("--b-heldout-dir", help="B's model without --heldout-class")
    parser.add_argument("--b-shirt-dir", help="B's model without --shirt-class")
    parser.add_argument("--save", default="ood_guard_ab", help="the results' file name")
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    args = parser.parse_args()
    settings = {"a": parse_setting(args.a), "b": parse_setting(args.b)}
    configs = [setting_config(args, setting) for setting in settings.values()]  # before any fit
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
    rows, flagged = [], {}
    b_side = b_side_models(args)
    for bench, model_dir, gan_dir, splits, sets in cases(data, args):
        sides = ((model_dir, gan_dir), b_side[model_dir])
        scored = []
        for (model, gan), config in zip(sides, configs, strict=True):
            discriminator = TrainedGan.load(gan).discriminator()
            classifier = TrainedClassifier.load(model)
            scored.append(served_scores(classifier, discriminator, splits, sets, config))
        (a, thr_a), (b, thr_b) = scored
        for name in sets:
            row = paired_difference(a, b, name, args.rounds, seed=len(rows))
            row |= {"bench": bench, "set": name}
            row |= {"flagged_a": round(float((a[name] > thr_a).mean()), 4)}
            row |= {"flagged_b": round(float((b[name] > thr_b).mean()), 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        flagged[f"{bench}: {model_dir}"] = [
            round(float((a["test"] > thr_a).mean()), 4),
            round(float((b["test"] > thr_b).mean()), 4),
        ]
    scorer = served_config(args).scorer
    write(rows, flagged, scorer, settings, args, b_side)
    worse = [r["set"] for r in rows if r["high"] < 0]
    better = [r["set"] for r in rows if r["low"] > 0]
    print(json.dumps({"scorer": scorer, "b_worse_on": worse, "b_better_on": better}))


def write(
    rows: list[dict[str, Any]],
    flagged: dict[str, list[float]],
    scorer: str,
    settings: dict[str, dict[str, str]],
    args: argparse.Namespace,
    b_side: dict[str, tuple[str, str]],
) -> None:
    """``<save>.md`` and ``.json``."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {a_dir: b_dir for a_dir, (b_dir, _) in b_side.items() if b_dir != a_dir}
    result = {"scorer": scorer, "settings": settings, "rows": rows, "test_flagged": flagged}
    (out / f"{args.save}.json").write_text(json.dumps(result | {"b_models": models}, indent=1))
    a, b = (setting_name(s) or "train.yaml's" for s in settings.values())
    title = f"Two guard settings inside `{scorer}`: A = {a}; B = {b}"
    if models:
        both = f"both {a}" if a == b else f"A: {a}; B: {b}"
        title = f"Two models' guards (`{scorer}`, {both} settings); B's models: " + ", ".join(
            f"{b_dir} for {a_dir}" for a_dir, b_dir in models.items()
        )
    lines = [
        f"# {title}\n",
        f"Machine: {machine()}. Command: `python bench/ood_guard_ab.py "
        f"{' '.join(sys.argv[1:])}`. One guard fitted per setting on the same model and images "
        f"({args.fit_images} train images; standardisation and threshold on val, 95 % TPR); "
        "in-distribution: the test split (detection bench) or the val split's second half "
        "(selection bench), each held-out class against its own model. B - A with a 95 % "
        f"interval from {args.rounds} paired bootstrap resamples.\n",
        "| bench | set | AUROC A | AUROC B | B - A [95 %] | flagged A | flagged B |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bench']} | {r['set']} | {r['a']:.4f} | {r['b']:.4f} | "
            f"{r['b_minus_a']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] | "
            f"{r['flagged_a']:.1%} | {r['flagged_b']:.1%} |"
        )
    lines += [
        "",
        "In-distribution images flagged (A, B): "
        + "; ".join(f"{k} {v[0]:.1%}, {v[1]:.1%}" for k, v in flagged.items())
        + ".",
    ]
    (out / f"{args.save}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
