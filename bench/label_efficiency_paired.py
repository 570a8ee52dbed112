"""The study's arms compared seed by seed.

A seed fixes the labelled subset every arm learns from (``labelled_indices``) and seeds each
arm's own random draws, so the difference of two arms within one seed is not the luck of a
subset, and its spread over the seeds says whether a mean gain is every seed's or one seed's.
The table's mean ± std per arm mixes in how hard each seed's labelled subset is; the paired
differences do not (their mean is the same).
"""

from __future__ import annotations

from statistics import mean, stdev
from typing import Any

#: the arm compared with the others; "triple, D merged" is its C merged with D (fitted on val)
FOCUS = "triple"
MERGED = "triple, D merged"


def per_seed(table: list[dict[str, Any]]) -> dict[float, dict[str, dict[int, float]]]:
    """``{fraction: {arm: {seed: fine}}}``, the triple arm's D-merged C as its own arm."""
    out: dict[float, dict[str, dict[int, float]]] = {}
    for row in table:
        arms = out.setdefault(row["labels"], {})
        arms[row["arm"]] = dict(zip(row["seeds"], row["fine_per_seed"], strict=True))
        merged = row.get("merged_fine_per_seed")
        if row["arm"] == FOCUS and merged:
            arms[MERGED] = dict(zip(row["seeds"], merged, strict=True))
    return out


def paired_gains(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The triple arm (and its D-merged C) minus every other arm, seed by seed, in points.

    Only pairs with two seeds or more in common: one seed has no spread to show.
    """
    gains = []
    for fraction, arms in per_seed(table).items():
        for focus in (FOCUS, MERGED):
            if focus not in arms:
                continue
            for other, fine in arms.items():
                if other in (FOCUS, MERGED):
                    continue
                seeds = sorted(set(arms[focus]) & set(fine))
                if len(seeds) < 2:
                    continue
                points = [100 * (arms[focus][s] - fine[s]) for s in seeds]
                gains.append(
                    {
                        "labels": fraction,
                        "arm": focus,
                        "against": other,
                        "seeds": seeds,
                        "points_per_seed": [round(p, 2) for p in points],
                        "mean_points": round(mean(points), 2),
                        "std_points": round(stdev(points), 2),
                        "ahead": sum(p > 0 for p in points),
                    }
                )
    return gains


def markdown(table: list[dict[str, Any]], gains: list[dict[str, Any]]) -> list[str]:
    """The seed-by-seed section of the results page; no lines when no pair has two seeds."""
    if not gains:
        return []
    shown = {f: arms for f, arms in per_seed(table).items() if f in {g["labels"] for g in gains}}
    seeds = sorted({s for arms in shown.values() for fine in arms.values() for s in fine})
    lines = [
        "\nSeed by seed (a seed is one labelled subset for every arm, so a difference within a "
        "seed is not the luck of a subset), fine accuracy in %:\n",
        "| labels | arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for fraction, arms in shown.items():
        for arm, fine in arms.items():
            cells = [f"{100 * fine[s]:.2f}" if s in fine else "—" for s in seeds]
            lines.append(f"| {fraction:.0%} | {arm} | {' | '.join(cells)} |")
    lines += [
        "\nThe triple arm minus each other arm within each seed, in points (mean ± sample std "
        "of the seeds' differences; over the seeds both ran, their means' difference):\n",
        "| labels | arm | minus | per seed | mean ± std | seeds ahead |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {g['labels']:.0%} | {g['arm']} | {g['against']} | "
        f"{', '.join(f'{p:+.2f}' for p in g['points_per_seed'])} | "
        f"{g['mean_points']:+.2f} ± {g['std_points']:.2f} | {g['ahead']} of {len(g['seeds'])} |"
        for g in gains
    ]
    return lines
