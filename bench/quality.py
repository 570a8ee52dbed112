"""Model quality of a train profile over seeds: accuracy per level, calibration, decodings.

For each seed the profile's model is built end to end as the train pipeline builds it (GAN
pretraining, the hierarchical classifier, calibration chosen on val;
:func:`models.evaluation.end_to_end.run_profile`) and scored on the official test split: accuracy
per level, ECE and classwise ECE per level before/after calibration, and every decoding (the
product of conditionals, greedy, HiClass' multiply/arithmetic/geometric combiners,
conditional-risk minimisation over the LCA cost) with hierarchical F1 and mistake severity. The
GAN and classifier seeds are the run's seed; the data split is the profile's.

Each run is stored as it ends (``bench/results/quality_runs/<arm>_seed<k>.json``) so that a study
is done in chunks: ``--seeds 0``, then ``--seeds 1`` ...; ``--report`` aggregates what is there.
``--arm scratch`` trains the same classifier from a random trunk (what the GAN adds at 100 % of
the labels). The calibrated classifiers are kept in ``checkpoints/quality/<arm>_seed<k>/``.
``--time-make-train`` times the train pipeline as ``make train`` runs it, on a fresh copy of
the committed tree (own checkpoints, ZenML and MLflow stores): the profile's wall-clock budget.

    python bench/quality.py --quick
    python bench/quality.py --seeds 0 1 2 && python bench/quality.py --arm scratch --seeds 0
    python bench/quality.py --time-make-train
    python bench/quality.py --report
    python bench/quality.py --recalibrate --report   # the kept models, calibrated again

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine
from models.calibration.calibrate import calibrate
from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.data.ingest import DatasetConfig, build_dataset
from models.evaluation.decoding import DECODINGS
from models.evaluation.end_to_end import run_profile
from models.evaluation.report import score_split
from models.gan.config import GanTrainConfig

RUNS = Path("bench/results/quality_runs")
KEYS = ["accuracy_category", "accuracy_group", "accuracy_fine", "ece_fine", "classwise_ece_fine"]
KEYS += ["hier_f1", "mistake_severity", "mean_lca_height"]


def sections(path: str) -> dict[str, Any]:
    """The config file's ``parameters``."""
    return (yaml.safe_load(Path(path).read_text()) or {}).get("parameters", {})


def one_run(params: dict[str, Any], seed: int, arm: str, quick: bool) -> dict[str, Any]:
    """Train and score one seed of the profile; the JSON-able summary."""
    dataset = DatasetConfig.model_validate(params["dataset"])
    gan_raw = {k: v for k, v in params["gan"].items() if k in GanTrainConfig.model_fields}
    gan = GanTrainConfig.model_validate(gan_raw | {"seed": seed, "progress": False})
    classifier = ClassifierConfig.model_validate(params["classifier"] | {"seed": seed})
    if arm == "scratch":
        classifier = classifier.model_copy(update={"init": "scratch"})
    if quick:
        dataset = dataset.model_copy(
            update={"subsample": {"train": 3000, "val": 1000, "test": 2000}}
        )
        gan = gan.model_copy(update={"steps": 40, "checkpoint_every": 1000})
        classifier = classifier.model_copy(update={"epochs": 2})
    data = build_dataset(dataset)
    root = tempfile.mkdtemp(prefix="quality-gan-") if quick else "checkpoints"
    run = run_profile(data, gan, classifier, root)
    if not quick:  # kept for bench/robustness.py --standard (checkpoints/ is not committed)
        run.classifier.save(Path("checkpoints/quality") / f"{arm}_seed{seed}")
    test = run.test
    return {
        "seed": seed,
        "arm": arm,
        "quick": quick,
        "test": {k: v for k, v in test.items() if k != "decodings"},
        "decodings": test["decodings"],
        "calibration": {
            "methods": run.calibration["methods"],
            **{k: v for k, v in run.calibration.items() if k.startswith("val_")},
            "selection": run.calibration["selection"],
        },
        "val_fine_accuracy_uncalibrated": run.history[-1].get("val_fine_accuracy"),
        "seconds": {k: round(v, 1) for k, v in run.seconds.items()},
        "machine": machine(),
    }


def recalibrate(params: dict[str, Any], path: Path) -> dict[str, Any]:
    """A stored run, its kept classifier calibrated again by today's code, scored again.

    The trained network is the run's own (``checkpoints/quality/<arm>_seed<k>``): only the
    calibration and the test scores change, so a change to the calibration code is measured on
    the same models without training them again.
    """
    run = json.loads(path.read_text())
    folder = Path("checkpoints/quality") / path.stem
    trained = dataclasses.replace(TrainedClassifier.load(folder), calibration=[])
    data = build_dataset(DatasetConfig.model_validate(params["dataset"]))
    cal = calibrate(trained, *data.split("val"), diagram=False)
    test = score_split(cal.classifier, *data.split("test")).metrics
    cal.classifier.save(folder)
    run["test"] = {k: v for k, v in test.items() if k != "decodings"}
    run["decodings"] = test["decodings"]
    run["calibration"] = {
        "methods": cal.report["methods"],
        **{k: v for k, v in cal.report.items() if k.startswith("val_")},
        "selection": cal.report["selection"],
    }
    run["recalibrated"] = True
    return run


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over seeds of every headline number, per decoding and per level."""
    test = [r["test"] for r in runs]
    levels = ["category", "group", "fine"]
    return {
        "seeds": [r["seed"] for r in runs],
        "fine_accuracy": mean_std([t["global_accuracy_fine"] for t in test]),
        "fine_ece": mean_std([t["ece_fine_after"] for t in test]),
        "fine_ece_uncalibrated": mean_std([t["ece_fine_before"] for t in test]),
        "levels": {
            lv: {
                "accuracy": mean_std([t[f"global_accuracy_{lv}"] for t in test]),
                "ece_before": mean_std([t[f"ece_{lv}_before"] for t in test]),
                "ece_after": mean_std([t[f"ece_{lv}_after"] for t in test]),
                "classwise_ece_before": mean_std([t[f"classwise_ece_{lv}_before"] for t in test]),
                "classwise_ece_after": mean_std([t[f"classwise_ece_{lv}_after"] for t in test]),
            }
            for lv in levels
        },
        "decodings": {
            how: {k: mean_std([r["decodings"][how][k] for r in runs]) for k in KEYS}
            for how in DECODINGS
        },
        "calibration_methods": {str(r["seed"]): r["calibration"]["methods"] for r in runs},
        "val_ece_fine": {
            "before": mean_std([r["calibration"]["val_ece_fine_before"] for r in runs]),
            "after": mean_std([r["calibration"]["val_ece_fine_after"] for r in runs]),
        },
        "seconds": {k: mean_std([r["seconds"][k] for r in runs]) for k in runs[0]["seconds"]},
    }


def pct(ms: dict[str, float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` in percent."""
    return f"{ms['mean'] * scale:.{digits}f} ± {ms['std'] * scale:.{digits}f}"


TARGET_FINE_ACCURACY, TARGET_FINE_ECE = 0.935, 0.010


def targets(gan: dict[str, Any]) -> dict[str, Any]:
    """The CPU default's targets against the mean over seeds."""
    acc, ece = gan["fine_accuracy"]["mean"], gan["fine_ece"]["mean"]
    return {
        "fine_accuracy": {"target": TARGET_FINE_ACCURACY, "met": acc >= TARGET_FINE_ACCURACY},
        "fine_ece": {"target": TARGET_FINE_ECE, "met": ece <= TARGET_FINE_ECE},
    }


def target_line(gan: dict[str, Any]) -> str:
    """One sentence: each target, met or missed by how much."""
    acc, ece = gan["fine_accuracy"]["mean"], gan["fine_ece"]["mean"]
    met = targets(gan)
    return (
        f"Targets: fine accuracy ≥ {TARGET_FINE_ACCURACY * 100:.1f} % — "
        + (
            "met"
            if met["fine_accuracy"]["met"]
            else f"**missed by {(TARGET_FINE_ACCURACY - acc) * 100:.2f} points**"
        )
        + f"; fine ECE ≤ {TARGET_FINE_ECE * 100:.1f} % — "
        + (
            "met"
            if met["fine_ece"]["met"]
            else f"**missed by {(ece - TARGET_FINE_ECE) * 100:.2f} points**"
        )
        + ".\n"
    )


def markdown(summary: dict[str, Any], config: str) -> str:
    """``quality.md``: the tables of :func:`aggregate` (and the scratch arm, make train)."""
    gan = summary["gan"]
    lines = [
        "# Model quality (Fashion-MNIST, official test split)\n",
        f"Profile `{config}`; seeds {gan['seeds']} (GAN and classifier seed; the split is the "
        f"profile's). Machine: {summary['machine']}. Produced by `python bench/quality.py` "
        "(runs in `bench/results/quality_runs/`).\n",
        f"**Fine accuracy {pct(gan['fine_accuracy'])} %, fine ECE {pct(gan['fine_ece'])} % "
        f"(uncalibrated {pct(gan['fine_ece_uncalibrated'])} %)**, mean ± std over seeds.\n",
        target_line(gan),
        "## Per level (product of calibrated conditionals, global argmax)\n",
        "| level | accuracy % | ECE before % | ECE after % | classwise ECE before % "
        "| classwise ECE after % |\n|---|---|---|---|---|---|",
    ]
    for lv, s in gan["levels"].items():
        lines.append(
            f"| {lv} | {pct(s['accuracy'])} | {pct(s['ece_before'])} | {pct(s['ece_after'])} | "
            f"{pct(s['classwise_ece_before'])} | {pct(s['classwise_ece_after'])} |"
        )
    lines += [
        "\n## Decodings\n",
        "| decoding | " + " | ".join(KEYS) + " |\n|---|" + "---|" * len(KEYS),
    ]
    for how, row in gan["decodings"].items():
        cells = [
            pct(row[k], 1.0, 3) if k in ("mistake_severity", "mean_lca_height") else pct(row[k])
            for k in KEYS
        ]
        lines.append(f"| {how} | " + " | ".join(cells) + " |")
    lines += [
        "\nAccuracy, ECE and hierarchical F1 in %; mistake severity = mean LCA height of the "
        "mistakes, mean_lca_height over all images (Bertinetto et al. 2020). `multiply`, "
        "`arithmetic`, `geometric`: HiClass' combiners on the level probabilities; `crm`: "
        "conditional-risk minimisation over the LCA cost (Karthik et al. 2021). Hierarchical "
        "F1: `hiclass.metrics.f1` (micro).\n",
        "## Calibration chosen on val (cross-validated NLL and ECE; identity unless no worse)\n",
        "| seed | maps per level | val fine ECE before | after |\n|---|---|---|---|",
    ]
    for seed, methods in gan["calibration_methods"].items():
        run = summary["runs"][f"gan_seed{seed}"]["calibration"]
        lines.append(
            f"| {seed} | {methods} | {run['val_ece_fine_before'] * 100:.2f} % | "
            f"{run['val_ece_fine_after'] * 100:.2f} % |"
        )
    if "scratch" in summary:
        sc = summary["scratch"]
        lines += [
            "\n## What GAN pretraining adds at 100 % of the labels\n",
            "| trunk | seeds | fine accuracy % | category % | fine ECE % |\n|---|---|---|---|---|",
            f"| GAN-pretrained | {gan['seeds']} | {pct(gan['fine_accuracy'])} | "
            f"{pct(gan['levels']['category']['accuracy'])} | {pct(gan['fine_ece'])} |",
            f"| random (scratch) | {sc['seeds']} | {pct(sc['fine_accuracy'])} | "
            f"{pct(sc['levels']['category']['accuracy'])} | {pct(sc['fine_ece'])} |",
        ]
    secs = gan["seconds"]
    lines.append(
        "\nSeconds per run (mean): "
        + ", ".join(f"{k} {v['mean']:.0f}" for k, v in secs.items())
        + " (GAN 0 when its checkpoint was reused)."
    )
    if "make_train" in summary:
        mt = summary["make_train"]
        lines.append(
            f"\n`make train` (its pipeline command) on a fresh copy of the committed tree (no "
            f"checkpoints, empty ZenML/MLflow/BentoML stores), `{mt['config']}`: "
            f"**{mt['seconds'] / 60:.1f} min** wall ({mt['seconds']:.0f} s), exit code "
            f"{mt['returncode']}, on {mt['machine']}."
        )
    return "\n".join(lines) + "\n"


def time_make_train(config: str) -> dict[str, Any]:
    """Wall seconds of ``make train`` on a fresh copy of HEAD (own checkpoints and stores)."""
    repo = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="hiergan-fresh-") as tmp:
        subprocess.run(f"git archive HEAD | tar -x -C {tmp}", shell=True, check=True)
        for link in (".venv", "data"):
            os.symlink((repo / link).resolve(), Path(tmp) / link)
        env = os.environ | {
            "ZENML_CONFIG_PATH": f"{tmp}/.zenconfig",
            "BENTOML_HOME": f"{tmp}/.bentoml",
        }
        # what `make train` runs once its set-up targets are up to date (they are: the copy
        # uses this checkout's environment and data; calling make would re-stamp the shared venv)
        command = [str(repo / ".venv/bin/python"), "-m", "pipelines.train_pipeline"]
        started = time.perf_counter()
        proc = subprocess.run(
            [*command, "--config", config], cwd=tmp, env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        Path(RUNS / "make_train.log").write_text(proc.stdout[-20000:] + proc.stderr[-20000:])
    return {
        "config": config,
        "seconds": seconds,
        "returncode": proc.returncode,
        "machine": machine(),
    }


def main() -> None:
    """Run seeds, or aggregate; write ``quality.md`` / ``quality.json`` for full runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="pipelines/configs/train.yaml")
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--arm", choices=["gan", "scratch"], default="gan")
    parser.add_argument("--quick", action="store_true", help="a data slice, a few steps")
    parser.add_argument("--report", action="store_true", help="aggregate the stored runs")
    parser.add_argument(
        "--recalibrate", action="store_true", help="calibrate the stored runs' models again"
    )
    parser.add_argument("--time-make-train", action="store_true")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    params = sections(args.config)
    if args.quick:
        run = one_run(params, 0, args.arm, quick=True)
        agg = aggregate([run])
        print(
            json.dumps(
                {
                    "quick": True,
                    "fine_accuracy": agg["fine_accuracy"]["mean"],
                    "fine_ece": agg["fine_ece"]["mean"],
                    "seconds": run["seconds"],
                }
            )
        )
        return
    RUNS.mkdir(parents=True, exist_ok=True)
    if args.recalibrate:
        for path in sorted(RUNS.glob("*_seed*.json")):
            run = recalibrate(params, path)
            path.write_text(json.dumps(run, indent=1))
            print(json.dumps({"run": path.stem, "fine_ece_after": run["test"]["ece_fine_after"]}))
    for seed in args.seeds:
        run = one_run(params, seed, args.arm, quick=False)
        (RUNS / f"{args.arm}_seed{seed}.json").write_text(json.dumps(run, indent=1))
        print(
            json.dumps(
                {
                    "seed": seed,
                    "arm": args.arm,
                    **{k: run["test"][k] for k in ("global_accuracy_fine", "ece_fine_after")},
                }
            ),
            flush=True,
        )
    if args.time_make_train:
        (RUNS / "make_train.json").write_text(json.dumps(time_make_train(args.config), indent=1))
    if not args.report:
        return
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(RUNS.glob("*_seed*.json"))}
    summary: dict[str, Any] = {"machine": machine(), "config": args.config, "runs": runs}
    for arm in ("gan", "scratch"):
        mine = [r for r in runs.values() if r["arm"] == arm]
        if mine:
            summary[arm] = aggregate(mine)
    if (RUNS / "make_train.json").exists():
        summary["make_train"] = json.loads((RUNS / "make_train.json").read_text())
    gan = summary["gan"]
    top = {
        "fine_accuracy_mean": gan["fine_accuracy"]["mean"],
        "fine_accuracy_std": gan["fine_accuracy"]["std"],
        "fine_ece_mean": gan["fine_ece"]["mean"],
        "fine_ece_std": gan["fine_ece"]["std"],
        "seeds": gan["seeds"],
        "targets": targets(gan),
    }
    out = Path(args.out)
    (out / "quality.json").write_text(json.dumps(top | summary, indent=1))
    (out / "quality.md").write_text(markdown(summary, args.config))
    print(json.dumps(top | {"make_train_seconds": summary.get("make_train", {}).get("seconds")}))


if __name__ == "__main__":
    main()
