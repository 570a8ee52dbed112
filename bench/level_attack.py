"""Accuracy per level under PGD on the leaf's loss (what the gate reads) and on each level's own.

The robustness evaluation (:mod:`models.robustness.evaluate`) attacks the merged leaf
prediction and scores every level from the adversarial images, so its coarse-level numbers say
how often a coarse node survives an attack *on the leaf*, not an attack on that level. Here the
same PGD (``train.yaml``'s ``robustness:`` steps, step ratio, random start, seed and stratified
test subset) also maximises each coarse level's own NLL: the level's marginal, ``logsumexp`` of
the merged leaf log-probabilities under each node. Each row: the accuracy of every level from
the adversarial images (the node on the predicted leaf's path, as the gate scores it) and the
attacked level's marginal accuracy.

    python bench/level_attack.py --model-dir DIR [--eps 0.02 0.05 0.1] [--save NAME]

The last line printed is one JSON object; ``--save NAME`` writes ``bench/results/NAME.md`` and
``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine  # noqa: E402
from models.attacks.evasion import MergedLeafModel, predict_leaf_log_probs  # noqa: E402
from models.classifier.io import TrainedClassifier  # noqa: E402
from models.data.ingest import DatasetConfig, build_dataset  # noqa: E402
from models.robustness.config import RobustnessConfig, level_keys  # noqa: E402
from models.robustness.level_attack import (  # noqa: E402
    MergedLevelModel,
    adversarial_images,
    level_marginals,
)
from models.robustness.scores import level_scores, stratified_subset  # noqa: E402
from models.runtime.tensors import to_unit_range  # noqa: E402
from models.tree.merge import TreeTensors  # noqa: E402


def measure(model_dir: str, eps_list: list[float]) -> dict[str, Any]:
    """Every level's accuracy under PGD on the leaf's loss and on each coarse level's own."""
    params = yaml.safe_load(Path("pipelines/configs/train.yaml").read_text())["parameters"]
    config = RobustnessConfig(**params["robustness"])
    classifier = TrainedClassifier.load(model_dir)
    tree = classifier.tree
    data = build_dataset(DatasetConfig(source="fashion-mnist", data_dir="data"))
    images, labels = data.split("test")
    merged = MergedLeafModel(
        classifier.build("cpu"), TreeTensors(tree, "cpu"), classifier.calibration
    ).eval()
    idx = stratified_subset(labels, config.attack_images, config.seed)
    x, y = to_unit_range(images[idx]), labels[idx]
    names = level_keys(tree)
    rows = []
    for eps in eps_list:
        for level in range(tree.depth):
            nodes = MergedLevelModel(merged, level)
            # the leaf level is attacked as the gate does it, on the merged model itself
            model = merged if level == tree.depth - 1 else nodes
            target = tree.level_labels(y, level)
            started = time.perf_counter()
            adv = adversarial_images(model, nodes.n_nodes, x, target, "pgd", eps, config)
            leaf_lp = predict_leaf_log_probs(merged, adv)
            scores = level_scores(leaf_lp, y, tree)
            marginal = level_marginals(leaf_lp, nodes.node_of_leaf, nodes.n_nodes).argmax(1)
            row = {"eps": eps, "loss_of": names[level]}
            row |= {n: round(scores[f"accuracy_{n}"], 4) for n in names}
            row["attacked_level_marginal"] = round(float((marginal.numpy() == target).mean()), 4)
            row["seconds"] = round(time.perf_counter() - started, 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {
        "model_dir": model_dir,
        "attack_images": int(len(idx)),
        "pgd_steps": config.pgd_steps,
        "levels": names,
        "gate": config.gate.model_dump(),
        "rows": rows,
        "machine": machine(),
    }


def write(result: dict[str, Any], name: str, command: str) -> None:
    """``bench/results/<name>.md`` and ``.json``."""
    out = Path("bench/results")
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    names = result["levels"]
    gate = result["gate"]
    at_gate = {r["loss_of"]: r for r in result["rows"] if r["eps"] == gate["eps"]}
    leaf, own = at_gate.get(names[-1]), at_gate.get(gate["level"])
    summary = []
    if leaf and own and gate["level"] != names[-1]:
        summary = [
            f"The gate reads {gate['level']} accuracy under the leaf's attack at eps "
            f"{gate['eps']:g}: **{100 * leaf[gate['level']]:.1f} %** (minimum "
            f"{100 * gate['min_accuracy']:.0f} %); an attack on the {gate['level']}'s own loss "
            f"leaves **{100 * own[gate['level']]:.1f} %**.",
            "",
        ]
    lines = [
        "# Accuracy per level under PGD: the leaf's loss vs each level's own",
        "",
        *summary,
        f"Machine: {result['machine']}. Command: `{command}`. Model: {result['model_dir']}; "
        f"{result['attack_images']} stratified test images, PGD-{result['pgd_steps']} "
        f"(train.yaml's robustness settings). Gate: {result['gate']}.",
        "",
        "| eps | loss attacked | " + " | ".join(names) + " | attacked level's marginal |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for r in result["rows"]:
        cells = " | ".join(f"{100 * r[n]:.1f} %" for n in names)
        marginal = 100 * r["attacked_level_marginal"]
        lines.append(f"| {r['eps']:g} | {r['loss_of']} | {cells} | {marginal:.1f} % |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    """Parse the arguments, measure, print (and save) the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a calibrated classifier")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    parser.add_argument("--save", help="write bench/results/NAME.md and .json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = measure(args.model_dir, args.eps)
    if args.save:
        write(result, args.save, "python " + " ".join(sys.argv))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
