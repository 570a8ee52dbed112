"""The label-efficiency study's summary: from whatever jobs finished to one table (.md + .json).

Per (label fraction, arm): the seeds that finished, fine (leaf) accuracy mean and sample standard
deviation, coarse (top level) and middle level means, C's optimiser steps, seconds per seed (GAN
pretraining included where an arm has one), whether the budget cut a run short; for the triple
arms the conditional fidelity of G per level (judged by the reference classifier trained on all
labels) and D merged with C; for gan-semi its discriminator merged with C. The targets of the
study are checked at the lowest label fraction. What G draws for every leaf (the first triple
job's samples at the lowest fraction) is one picture beside the table, ``<name>_samples.png``;
where the jobs recorded a val curve (``study.curve_images``), the arms' mean curves are another,
``<name>_curves.png``, and a table says what each arm gained in the second half of its steps.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench import label_efficiency_arms as arms
from bench import label_efficiency_paired as paired
from bench.machine import machine
from models.data.dataset import LabelledImages
from models.data.ingest import build_dataset
from models.reporting.plots import figure_png, pyplot, sample_grid_png
from models.tree.hierarchy import Hierarchy
from models.tree.merge import TreeTensors
from models.triple.pictures import fidelity_of, leaf_spread, sample_diversity

SAMPLES_PER_LEAF = 8  # columns of the samples picture


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _std(values: list[float]) -> float | None:
    return round(statistics.stdev(values), 4) if len(values) > 1 else None


def collect(runs: Path) -> dict[str, dict[str, Any]]:
    """Every finished job's result by job name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))}


def per_seed_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (arm, fraction, seed); gan-semi-head comes out of the gan-semi jobs."""
    out = []
    for res in results.values():
        if "arm" not in res or res["arm"] == "reference":
            continue
        out.append(res)
        if res["arm"] == "gan-semi" and "head" in res:
            head = res["head"]
            out.append(
                res
                | head
                | {"arm": "gan-semi-head", "pretrain_steps": head["steps"], "merged_fine": None}
                | {"val_curve": None}  # the curve is the fine-tuned C's, not the head's
            )
    return out


def fidelity(
    results: dict[str, Any], runs: Path, params: arms.StudyParams, data: LabelledImages | None
) -> dict[str, dict[str, float]]:
    """Per triple job: G's conditional fidelity and its diversity.

    Fidelity is judged by the reference classifier (if it finished); diversity is measured
    against the train split's images and needs no judge. ``data``: the study's dataset, None
    when no job left samples.
    """
    ref_path = arms.weights_dir(runs) / "reference.safetensors"
    samples = sorted(runs.glob("*.samples.npz"))
    if not samples or data is None:
        return {}
    judge = arms.reference_model(params, data, ref_path) if ref_path.exists() else None
    tt = TreeTensors(data.hierarchy)
    real_spread = leaf_spread(*data.split("train"), data.hierarchy.num_leaves)
    out = {}
    for path in samples:
        name = path.name.removesuffix(".samples.npz")
        with np.load(path, allow_pickle=False) as npz:
            images, leaves = npz["images"], npz["leaves"]
        out[name] = {"diversity": sample_diversity(images, leaves, real_spread)}
        if judge is not None:
            judged = arms.leaf_log_probs(judge, tt, images).argmax(1).numpy()
            out[name] |= fidelity_of(data.hierarchy, leaves, judged)
    return out


def samples_picture(runs: Path, tree: Hierarchy) -> tuple[str, bytes] | None:
    """The first triple job's samples (lowest fraction, lowest seed) as a PNG, a row per leaf.

    Returns the job's name and the PNG, or None when no triple job left samples.
    """
    jobs = sorted(
        (
            parse
            for path in runs.glob("triple-*.samples.npz")
            if (parse := _triple_job(path.name.removesuffix(".samples.npz")))
        ),
        key=lambda job: (job[1], job[0] != "triple", job[2]),
    )
    if not jobs:
        return None
    name = arms.job_name(*jobs[0])
    with np.load(runs / f"{name}.samples.npz", allow_pickle=False) as npz:
        images, leaves = npz["images"], npz["leaves"]
    return name, sample_grid_png(images, leaves, tree.leaves, SAMPLES_PER_LEAF)


def _triple_job(name: str) -> tuple[str, float, int] | None:
    """:func:`~bench.label_efficiency_arms.parse_job`, None for a name not made so."""
    try:
        return arms.parse_job(name)
    except ValueError:
        return None


def aggregate(
    rows: list[dict[str, Any]], fid: dict[str, dict[str, float]], order: list[str]
) -> list[dict[str, Any]]:
    """Mean ± std per (fraction, arm), in the study's arm order."""
    table = []
    for fraction in sorted({r["labels"] for r in rows}):
        for arm in order:
            group = sorted(
                (r for r in rows if r["labels"] == fraction and r["arm"] == arm),
                key=lambda r: r["seed"],
            )
            if not group:
                continue
            fine = [r["fine"] for r in group]
            row: dict[str, Any] = {
                "labels": fraction,
                "arm": arm,
                "seeds": [r["seed"] for r in group],
                "fine_mean": _mean(fine),
                "fine_std": _std(fine),
                "coarse_mean": _mean([r["coarse"] for r in group]),
                "group_mean": _mean([r.get("acc_group", r["coarse"]) for r in group]),
                "fine_per_seed": fine,
                "steps": group[0]["steps"] if arm != "gan-semi-head" else 0,
                "pretrain_steps": group[0].get("pretrain_steps", 0),
                "seconds": _mean([r["seconds"] for r in group]),
                "truncated": any(r.get("truncated") for r in group),
                "labelled": group[0].get("labelled"),
            }
            merged = [r["merged_fine"] for r in group if r.get("merged_fine") is not None]
            if merged:
                row["merged_fine_mean"] = _mean(merged)
                row["merge_weights"] = [r["merge_weight"] for r in group]
                if len(merged) == len(group):
                    row["merged_fine_per_seed"] = merged
            names = [arms.job_name(arm, fraction, r["seed"]) for r in group]
            curve = mean_curve([r.get("val_curve") for r in group])
            if curve:
                row["val_curve"] = curve
            fids = [fid[n] for n in names if n in fid]
            if fids:
                row["fidelity"] = {k: _mean([f[k] for f in fids]) for k in fids[0]}
            table.append(row)
    return table


def mean_curve(curves: list[list[list[float]] | None]) -> list[list[float]]:
    """The seeds' val curves averaged point by point.

    [] unless every seed has one at the same steps (a run cut by the budget has a shorter one).
    """
    if not curves or any(not c for c in curves):
        return []
    steps = [[point[0] for point in c] for c in curves]  # type: ignore[union-attr]
    if any(s != steps[0] for s in steps):
        return []
    return [
        [step, round(statistics.fmean(c[i][1] for c in curves), 4)]  # type: ignore[index]
        for i, step in enumerate(steps[0])
    ]


def curve_gains(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row with a val curve: val fine accuracy at half its steps, at the end, and the gain."""
    out = []
    for r in table:
        curve = r.get("val_curve")
        if not curve:
            continue
        half = min(curve, key=lambda point: abs(point[0] - curve[-1][0] / 2))
        out.append(
            {
                "labels": r["labels"],
                "arm": r["arm"],
                "half_step": half[0],
                "half": half[1],
                "end": curve[-1][1],
                "gain_points": round(100 * (curve[-1][1] - half[1]), 2),
            }
        )
    return out


def curves_picture(table: list[dict[str, Any]]) -> bytes | None:
    """The arms' mean val curves at the lowest label fraction as a PNG; None without curves."""
    if not table:
        return None
    low = min(r["labels"] for r in table)
    rows = [r for r in table if r["labels"] == low and r.get("val_curve")]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        steps, fine = zip(*r["val_curve"], strict=True)
        ax.plot(steps, [100 * f for f in fine], marker="o", ms=3, label=r["arm"])
    ax.set(xlabel="C's optimiser steps", ylabel="val fine accuracy (%, EMA teacher)")
    ax.set_title(f"{low:.0%} labels: is an arm still learning at the budget?", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def targets(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets at the lowest label fraction, with the margins."""
    if not table:
        return {}
    low = min(r["labels"] for r in table)
    at = {r["arm"]: r for r in table if r["labels"] == low}
    out: dict[str, Any] = {"labels": low}
    if "triple" in at and "scratch" in at:
        gain = at["triple"]["fine_mean"] - at["scratch"]["fine_mean"]
        out["triple_minus_scratch_points"] = round(100 * gain, 2)
        out["triple_ge_scratch_plus_5"] = gain >= 0.05
    if "triple" in at and "scratch-ssl" in at:
        gain = at["triple"]["fine_mean"] - at["scratch-ssl"]["fine_mean"]
        out["triple_minus_scratch_ssl_points"] = round(100 * gain, 2)
        out["triple_ge_scratch_ssl_plus_1"] = gain >= 0.01
    if "triple" in at and "gan-ssl" in at:  # what the game adds to pretraining + the same term
        gain = at["triple"]["fine_mean"] - at["gan-ssl"]["fine_mean"]
        out["triple_minus_gan_ssl_points"] = round(100 * gain, 2)
    fid = at.get("triple", {}).get("fidelity", {})
    if "fidelity_fine" in fid:
        out["fidelity_fine"] = fid["fidelity_fine"]
        out["fidelity_fine_ge_90"] = fid["fidelity_fine"] >= 0.9
    if "diversity" in fid:
        out["diversity"] = fid["diversity"]
    return out


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def _fidelity_table(fid_rows: list[dict[str, Any]], reference: dict[str, Any] | None) -> list[str]:
    """G's fidelity per level and its diversity (the page's table).

    Diversity alone where no judge's weights were beside the runs (a runs folder assembled from
    copied job files).
    """
    levels = [k for k in fid_rows[0]["fidelity"] if k not in ("fidelity_fine", "diversity")]
    if levels:
        intro = (
            "\nConditional fidelity of G (share of G(z, y) the all-labels reference classifier "
            "assigns to y's node; reference test fine accuracy "
            f"{_fmt(reference.get('fine') if reference else None, None)} %), in %, and its "
        )
    else:
        intro = (
            "\nConditional fidelity of G not judged (the reference classifier's weights were "
            "not beside these runs); its "
        )
    header = ["labels", "arm", *(k.removeprefix("fidelity_") for k in levels), "diversity"]
    lines = [
        intro + "diversity (per leaf, the pixel standard deviation across G's samples over that "
        "across the leaf's real images; 1 = as varied as the data, ~0 = one image per leaf):\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in fid_rows:
        cells = [f"{100 * r['fidelity'][k]:.1f}" for k in levels]
        cells.append(f"{r['fidelity'].get('diversity', float('nan')):.2f}")
        lines.append(f"| {r['labels']:.0%} | {r['arm']} | {' | '.join(cells)} |")
    return lines


def markdown(
    table: list[dict[str, Any]],
    head: dict[str, Any],
    reference: dict[str, Any] | None,
    picture: tuple[str, str] | None = None,
    curves_file: str | None = None,
) -> str:
    """The results page."""
    title = "Label efficiency: the Triple-GAN game over the label tree vs its baselines"
    if head["label"]:
        title += f" ({head['label']})"
    lines = [
        f"# {title}\n",
        f"Machine: {head['machine']}. Command: `{head['command']}`. Wall time "
        f"{head['seconds']:.0f} s. Test split: {head['test_images']} images. Accuracies in %, "
        "mean ± sample std over seeds; steps = C's optimiser steps (every arm the same); seconds "
        "per seed include GAN pretraining where the arm has one (its steps in brackets).\n",
        "| labels | arm | seeds | fine | coarse | group | steps | seconds | D merged (fine) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        steps = str(r["steps"]) + (f" (+{r['pretrain_steps']} GAN)" if r["pretrain_steps"] else "")
        if r["truncated"]:
            steps += " cut by budget"
        merged = r.get("merged_fine_mean")
        lines.append(
            f"| {r['labels']:.0%} | {r['arm']} | {len(r['seeds'])} | "
            f"{_fmt(r['fine_mean'], r['fine_std'])} | {_fmt(r['coarse_mean'], None)} | "
            f"{_fmt(r['group_mean'], None)} | {steps} | {r['seconds']:.0f} | "
            f"{_fmt(merged, None)} |"
        )
    lines += paired.markdown(table, head["paired"])
    fid_rows = [r for r in table if "fidelity" in r]
    if fid_rows:
        lines += _fidelity_table(fid_rows, reference)
    if picture is not None:
        job, file = picture
        lines.append(f"\nWhat G draws for each leaf ({job}, a row per leaf): ![samples]({file})")
    gains = curve_gains(table)
    if gains:
        lines += [
            "\nLearning curves: C's EMA teacher's fine accuracy on the val split (its first "
            f"{head['settings']['study']['curve_images']} images, never trained on), mean over "
            "seeds, at half the steps and at the end; a gain in the second half says the arm "
            "was still learning when the budget stopped it.\n",
            "| labels | arm | val fine at half (step) | val fine at the end | second-half gain |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {g['labels']:.0%} | {g['arm']} | {100 * g['half']:.2f} ({g['half_step']:.0f}) "
            f"| {100 * g['end']:.2f} | {g['gain_points']:+.2f} |"
            for g in gains
        ]
        if curves_file is not None:
            lines.append(f"\nThe curves at the lowest label fraction: ![curves]({curves_file})")
    lines += [
        "\nTargets at the lowest label fraction:\n",
        "```",
        json.dumps(head["targets"]),
        "```",
    ]
    unfinished = {k: v for k, v in head["jobs"].items() if v != "done"}
    if unfinished:
        lines += [
            "\nJobs that did not finish: " + ", ".join(f"{k}: {v}" for k, v in unfinished.items())
        ]
    lines.append(f"\nSettings: `{json.dumps(head['settings'], default=str)}`\n")
    return "\n".join(lines)


def summarise(
    params: arms.StudyParams,
    runs: Path,
    out: Path,
    state: dict[str, str],
    args: Any,
    seconds: float,
) -> dict[str, Any]:
    """Write ``label_efficiency.md`` and ``.json`` from the finished jobs; the headline."""
    results = collect(runs)
    # the dataset (the train split's spread, the tree) only when G left samples to judge
    data = build_dataset(params.dataset) if any(runs.glob("*.samples.npz")) else None
    fid = fidelity(results, runs, params, data)
    table = aggregate(per_seed_rows(results), fid, list(params.study.arms))
    head = {
        "label": params.study.label + (" — quick" if args.quick else ""),
        "machine": machine(),
        "command": "python bench/label_efficiency.py " + " ".join(sys.argv[1:]),
        "seconds": seconds,
        "test_images": _test_images(results),
        "targets": targets(table),
        "paired": paired.paired_gains(table),
        "jobs": state,
        "settings": params.model_dump(),
    }
    reference = results.get("reference")
    document = {"rows": table, "reference": reference, **head}
    out.mkdir(parents=True, exist_ok=True)
    name = "label_efficiency_quick" if args.quick else "label_efficiency"
    shown, curves_file = write_pictures(table, runs, data, out, name)
    (out / f"{name}.json").write_text(json.dumps(document, indent=1, default=str))
    (out / f"{name}.md").write_text(markdown(table, head, reference, shown, curves_file))
    return {"rows": len(table), "targets": head["targets"], "seconds": round(seconds, 1)}


def write_pictures(
    table: list[dict[str, Any]], runs: Path, data: LabelledImages | None, out: Path, name: str
) -> tuple[tuple[str, str] | None, str | None]:
    """G's samples and the val curves as ``<name>_samples.png`` / ``<name>_curves.png``.

    Returns ``(job, file)`` of the samples picture and the curves' file, each None when there
    is nothing to draw, or when matplotlib is missing (a lent GPU machine has torch alone): the
    tables are written all the same, and ``--summarise-only`` where it is installed draws them.
    """
    try:
        picture = samples_picture(runs, data.hierarchy) if data is not None else None
        curves = curves_picture(table)
    except ModuleNotFoundError as err:
        print(f"pictures left out ({err}); --summarise-only draws them", file=sys.stderr)
        return None, None
    shown = None
    if picture is not None:
        (out / f"{name}_samples.png").write_bytes(picture[1])
        shown = (picture[0], f"{name}_samples.png")
    if curves is not None:
        (out / f"{name}_curves.png").write_bytes(curves)
    return shown, f"{name}_curves.png" if curves is not None else None


def _test_images(results: dict[str, dict[str, Any]]) -> int | None:
    return next((r["test_images"] for r in results.values() if "test_images" in r), None)
