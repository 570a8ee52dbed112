"""Robustness of the standard, PGD-trained and TRADES models: clean, PGD-20, AutoAttack, per level.

1. **standard**: a saved calibrated classifier of the CPU default profile (``--standard DIR``,
   e.g. the one ``bench/quality.py`` keeps of its seed 0, or the train pipeline's
   ``calibrated_classifier``).
2. **pgd** and **trades**: the adversarial profile (``pipelines/configs/train_adversarial.yaml``,
   its ``classifier.adversarial`` section) with Madry PGD and with TRADES. A fine-tuning profile
   (``from_start: false``) continues from the standard model's weights (the clean part of an
   adversarial run is the standard run), then calibrates on val as the pipeline does; a
   ``from_start`` profile is trained end to end (:func:`models.evaluation.end_to_end.run_profile`,
   the GAN reused by run key). Each model is saved under ``--models-dir`` as it is done, so the
   study runs in chunks (``--only pgd`` ...).
3. Every model is measured as the pipeline's ``evaluate_robustness`` step measures it, with the
   adversarial profile's ``robustness`` section (FGSM, PGD-20 and AutoAttack per level, the
   corruption grid) on ``--eval-images`` stratified test images; the result is stored beside the
   model, and ``--report`` writes ``robustness.md`` and ``robustness.json``, whose
   ``adversarial_profile`` block holds the shipped profile's ``clean_fine``, ``pgd20_fine`` and
   ``autoattack_fine``.

    python bench/robustness.py --quick
    python bench/robustness.py --standard DIR --only pgd      # train + measure, one chunk
    python bench/robustness.py --standard DIR --report        # measure what is missing, write
    python bench/robustness.py --config pipelines/configs/train_adversarial_gpu.yaml \
        --standard DIR --only pgd --budget-s 330                 # a from_start profile, sized

``--budget-s`` (a ``from_start`` profile only) times a few GAN and adversarial steps on the
machine and cuts the GAN's steps and the classifier's epochs, never raising them, so that
training and measuring finish inside that many seconds (``bench/budget.py``).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.budget import classifier_step_seconds, fit_epochs, gan_step_seconds
from bench.machine import machine
from models.calibration.calibrate import calibrate
from models.classifier.config import ClassifierConfig
from models.classifier.io import TrainedClassifier
from models.classifier.training import finetune_adversarially, fit_classifier
from models.data.dataset import LabelledImages
from models.data.ingest import DatasetConfig, build_dataset
from models.evaluation.end_to_end import run_profile
from models.gan.config import GanTrainConfig
from models.gan.networks import GanArchitecture
from models.robustness.config import RobustnessConfig, level_keys
from models.robustness.evaluate import evaluate_robustness

MODELS = ("standard", "pgd", "trades")
# the budget counts from here: interpreter start and imports come on top
STARTED = time.perf_counter()


def section(path: str, *keys: str) -> dict[str, Any]:
    """``parameters.<keys...>`` of a run config (empty when absent)."""
    node: Any = (yaml.safe_load(Path(path).read_text()) or {}).get("parameters", {})
    for key in keys:
        node = (node or {}).get(key, {})
    return node or {}


def sized_to_budget(
    profile: ClassifierConfig,
    gan: GanTrainConfig,
    data: LabelledImages,
    seconds: float,
    gan_share: float = 0.1,
) -> tuple[ClassifierConfig, GanTrainConfig, dict[str, float]]:
    """A ``from_start`` profile with its GAN steps and epochs cut to fit ``seconds`` from now.

    The GAN gets at most ``gan_share`` of what is left after the probes (when the classifier
    starts from its trunk); the classifier's main phase the rest.
    """
    t0 = time.perf_counter()
    gan_step = gan_step_seconds(data, gan, 20) if profile.init == "gan" else 0.0
    clf_step = classifier_step_seconds(data, gan, profile, 20)
    left = seconds - (time.perf_counter() - t0)
    gan_steps = gan.steps
    if gan_step > 0:
        gan_steps = max(1, min(gan.steps, math.floor(gan_share * left / gan_step)))
        left -= gan_steps * gan_step
    steps_per_epoch = max(1, len(data.split("train")[1]) // profile.batch_size)
    epochs = fit_epochs(left, clf_step, steps_per_epoch, profile.epochs)
    plan = {
        "gan_step_ms": round(gan_step * 1000, 2),
        "classifier_step_ms": round(clf_step * 1000, 2),
        "gan_steps": gan_steps,
        "epochs": epochs,
        "epochs_configured": profile.epochs,
    }
    print(json.dumps({"plan": plan}), file=sys.stderr, flush=True)
    gan = gan.model_copy(update={"steps": gan_steps, "checkpoint_every": max(gan_steps, 1)})
    return profile.model_copy(update={"epochs": epochs}), gan, plan


def adversarial_model(
    name: str,
    standard: TrainedClassifier,
    profile: ClassifierConfig,
    data: LabelledImages,
    gan: GanTrainConfig,
    gan_root: Path,
    budget_s: float | None = None,
) -> tuple[TrainedClassifier, float]:
    """Train the ``pgd`` or ``trades`` model of the adversarial profile; it and its seconds.

    ``profile`` is the adversarial profile's classifier section (its network must be the
    standard model's when it fine-tunes it). A ``from_start`` profile pretrains its GAN under
    ``gan_root`` (one folder per model, so two chunks can run at once) and, with ``budget_s``,
    is cut to fit that many seconds from now (:func:`sized_to_budget`).
    """
    if profile.adversarial is None:
        raise ValueError("the adversarial profile has no classifier.adversarial section")
    adv = profile.adversarial.model_copy(update={"method": name})
    config = profile.model_copy(update={"adversarial": adv, "seed": standard.config.seed})
    started = time.perf_counter()
    if adv.from_start:
        plan: dict[str, float] = {}
        if budget_s is not None:
            config, gan, plan = sized_to_budget(config, gan, data, budget_s)
        run = run_profile(data, gan, config, gan_root, evaluate_test=False)
        run.classifier.info["bench_plan"] = plan
        return run.classifier, time.perf_counter() - started
    model = standard.build()
    finetune_adversarially(model, config, data.hierarchy, data.split("train"), data.split("val"))
    tuned = TrainedClassifier.from_model(
        model, config, data.hierarchy, {**standard.info, "adversarial_from": "standard"}
    )
    tuned = calibrate(tuned, *data.split("val"), diagram=False).classifier
    return tuned, time.perf_counter() - started


def measure(
    classifier: TrainedClassifier, data: LabelledImages, config: RobustnessConfig
) -> dict[str, Any]:
    """The robustness metrics of one model (no pictures), its full-test clean accuracy."""
    test_x, test_y = data.split("test")
    result = evaluate_robustness(classifier, test_x, test_y, config)
    m = result.metrics
    m["clean_fine_full_test"] = float((classifier.predict_proba(test_x).argmax(1) == test_y).mean())
    m["tables"] = result.tables
    return m


def quick_standard(data: LabelledImages) -> TrainedClassifier:
    """A small scratch classifier for ``--quick`` runs."""
    config = ClassifierConfig(init="scratch", feature_pool=2, hidden=64, epochs=3)
    arch = GanArchitecture(latent_dim=16, g_width=16, d_width=16)
    fit = fit_classifier(config, arch, data.hierarchy, *data.split("train"))
    trained = TrainedClassifier.from_model(fit.model, config, data.hierarchy, {"quick": True})
    return calibrate(trained, *data.split("val"), diagram=False).classifier


def headline_row(m: dict[str, Any], level: str, eps: float) -> dict[str, float | None]:
    """Clean, PGD and AutoAttack accuracy of one level at ``eps`` (None where not measured)."""
    key = f"{eps:g}"
    return {
        "clean": m["clean"][f"accuracy_{level}"],
        "pgd": m["attacks"].get("pgd", {}).get(key, {}).get(f"accuracy_{level}"),
        "autoattack": m["attacks"].get("autoattack", {}).get(key, {}).get(f"accuracy_{level}"),
    }


def report(
    results: dict[str, dict[str, Any]], config: RobustnessConfig, profile: str, shipped: str
) -> tuple[str, dict[str, Any]]:
    """``robustness.md`` and ``robustness.json`` from the stored results."""
    first = next(iter(results.values()))["metrics"]
    names = [n for n in ("category", "group", "fine") if f"accuracy_{n}" in first["clean"]]
    eps = max(config.autoattack_eps or config.eps)
    lines = [
        "# Robustness (Fashion-MNIST official test split)\n",
        f"Machine: {machine()}. `python bench/robustness.py`; robustness settings of `{profile}` "
        f"on stratified test images ({first['attack_images']} unless a row says otherwise; "
        f"corruptions on {first['corruption_images']}): ART PGD-{config.pgd_steps} (step "
        f"{config.pgd_step_ratio:g} x eps, random start) and AutoAttack (APGD-CE, APGD-DLR, "
        f"{config.autoattack_iter} iterations each, then Square with "
        f"{config.autoattack_square_queries} queries; {config.autoattack_restarts} restart), "
        "L-inf on [0, 1] pixels, against the merged leaf prediction; every level scored on the "
        "same adversarial images.\n",
        f"## Clean / PGD-{config.pgd_steps} / AutoAttack at eps = {eps:g}, per level\n",
        "| model | training | train s | attacked images | full-test clean fine | "
        + " | ".join(f"{n} clean / PGD / AA" for n in names)
        + " |\n|---|---|---|---|---|"
        + "---|" * len(names),
    ]
    for name, r in results.items():
        m = r["metrics"]
        cells = []
        for n in names:
            h = headline_row(m, n, eps)
            cells.append(" / ".join("–" if v is None else f"{v * 100:.1f}" for v in h.values()))
        lines.append(
            f"| {name} | {r['training']} | {r['train_seconds']:.0f} | {m['attack_images']} | "
            f"{m['clean_fine_full_test'] * 100:.2f} | " + " | ".join(cells) + " |"
        )
    for name, r in results.items():
        lines += [
            f"\n## {name}: every attack and eps; corruptions (mean over severities)\n",
            r["metrics"]["tables"]["attacks"],
            r["metrics"]["tables"]["corruptions"],
        ]
    m = results[shipped]["metrics"]
    h = headline_row(m, "fine", eps)
    block = {
        "profile": profile,
        "model": shipped,
        "eps": eps,
        "clean_fine": m["clean_fine_full_test"],
        "clean_fine_attack_subset": h["clean"],
        "pgd20_fine": h["pgd"],
        "autoattack_fine": h["autoattack"],
        "attack_images": m["attack_images"],
        "target": "PGD-20 fine >= 0.75 at clean >= 0.85",
        "target_met": bool((h["pgd"] or 0) >= 0.75 and m["clean_fine_full_test"] >= 0.85),
    }
    lines.insert(
        2,
        f"**Adversarial profile (`{profile}`, {shipped}): clean fine "
        f"{block['clean_fine'] * 100:.2f} % (full test), PGD-{config.pgd_steps} "
        f"{(h['pgd'] or 0) * 100:.1f} %, AutoAttack {(h['autoattack'] or 0) * 100:.1f} % at "
        f"eps {eps:g}; target {'met' if block['target_met'] else 'NOT met'}.**\n",
    )
    summary = {
        "machine": machine(),
        "adversarial_profile": block,
        "models": {
            name: {
                "training": r["training"],
                "train_seconds": r["train_seconds"],
                "clean_fine_full_test": r["metrics"]["clean_fine_full_test"],
                "levels": {n: headline_row(r["metrics"], n, eps) for n in names},
                "metrics": {k: v for k, v in r["metrics"].items() if k != "tables"},
            }
            for name, r in results.items()
        },
        "settings": config.model_dump(mode="json"),
    }
    return "\n".join(lines) + "\n", summary


def main() -> None:
    """Train what is missing, measure what is missing, write the report when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standard", help="a saved calibrated classifier of the default profile")
    parser.add_argument("--config", default="pipelines/configs/train_adversarial.yaml")
    parser.add_argument("--models-dir", default="checkpoints/robustness")
    parser.add_argument("--only", nargs="*", choices=MODELS, default=list(MODELS))
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="small data, 1 epoch, tiny attacks")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="a from_start profile: train and measure inside this many seconds after imports",
    )
    parser.add_argument(
        "--reserve-s", type=float, default=240.0, help="of the budget, kept for measuring"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)7.0f ms %(message)s")
    dataset = DatasetConfig.model_validate(section(args.config, "dataset"))
    config = RobustnessConfig.model_validate(section(args.config, "robustness"))
    config = config.model_copy(
        update={"attack_images": args.eval_images, "saliency_per_class": 0, "saliency_mistakes": 0}
    )
    profile = ClassifierConfig.model_validate(section(args.config, "classifier"))
    if profile.adversarial is None:
        parser.error(f"{args.config} has no classifier.adversarial section")
    adv = profile.adversarial
    gan_raw = section(args.config, "gan")
    gan = GanTrainConfig.model_validate(
        {k: v for k, v in gan_raw.items() if k in GanTrainConfig.model_fields} | {"progress": False}
    )
    root = Path(args.models_dir)
    if args.quick:
        dataset = dataset.model_copy(update={"subsample": {"train": 2000, "val": 500, "test": 500}})
        config = config.model_copy(
            update={
                "attack_images": 100,
                "corruption_images": 100,
                "corruptions": ["gaussian_noise", "rotation"],
                "severities": [1, 5],
                "autoattack_iter": 5,
                "autoattack_square_queries": 20,
            }
        )
        adv = adv.model_copy(update={"epochs": 1, "from_start": False})
        profile = ClassifierConfig(
            init="scratch", feature_pool=2, hidden=64, epochs=3, adversarial=adv
        )
        root = Path(tempfile.mkdtemp(prefix="robustness-quick-"))
    data = build_dataset(dataset)
    if args.quick:
        standard = quick_standard(data)
    elif args.standard:
        standard = TrainedClassifier.load(args.standard)
    else:
        parser.error("--standard DIR is needed (or --quick)")
    for name in args.only:
        folder = root / name
        if not (folder / "classifier.json").exists():
            if name == "standard":
                model, seconds, training = standard, 0.0, "clean (the default profile)"
            else:
                budget = None
                if args.budget_s is not None:
                    budget = args.budget_s - (time.perf_counter() - STARTED) - args.reserve_s
                model, seconds = adversarial_model(
                    name, standard, profile, data, gan, root / f"{name}-gan", budget
                )
                epochs = model.config.epochs if adv.from_start else adv.epochs
                training = ("from the start" if adv.from_start else "fine-tuned") + (
                    f", {name}, eps {adv.eps:g}, {adv.steps} steps, {epochs} epochs"
                )
            model.info.update({"bench_training": training, "bench_train_seconds": seconds})
            model.save(folder)
        if not (folder / "robustness.json").exists():
            model = TrainedClassifier.load(folder)
            result = {
                "training": model.info.get("bench_training", ""),
                "train_seconds": float(model.info.get("bench_train_seconds", 0.0)),
                "metrics": measure(model, data, config),
            }
            (folder / "robustness.json").write_text(json.dumps(result, default=float))
        print(json.dumps({"model": name, "done": True}), flush=True)
    results = {
        n: json.loads((root / n / "robustness.json").read_text())
        for n in MODELS
        if (root / n / "robustness.json").exists()
    }
    if not results:
        raise SystemExit(f"no measured model under {root}: nothing to report")
    shipped = adv.method if adv.method in results else next(iter(results))
    markdown, summary = report(results, config, args.config, shipped)
    if args.report and not args.quick:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "robustness.md").write_text(markdown)
        (out / "robustness.json").write_text(json.dumps(summary, indent=1, default=float))
    block = summary["adversarial_profile"]
    print(
        json.dumps(
            {
                "quick": args.quick,
                **{k: v for k, v in block.items() if k != "target"},
                "levels": list(level_keys(standard.tree)),
            }
        )
    )


if __name__ == "__main__":
    main()
